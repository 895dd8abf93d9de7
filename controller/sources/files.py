"""The GitOps source: a directory of LambdaRollout documents, kept in step with the disk.

The directory is usually a git checkout refreshed by git-sync, Argo CD, Flux or ``git pull``; a
commit that bumps ``version:`` is a deployment. Every ``*.yaml`` / ``*.yml`` below it (recursive)
is loaded; changes are seen at once through ``watchfiles`` and a periodic rescan is a safety net
for file systems where notifications get lost (network mounts, symlink swaps). A scan reads every
file but parses only those whose text changed (``FileCache``): a thousand documents cost a few
milliseconds a rescan, not a second.

A file that becomes invalid must not stop or move a rollout mid-way: its rollouts are *held* with
the last valid spec the file gave and the errors that hold them, and the engine shows them as
Invalid and touches nothing. A file that disappears stops managing its rollouts (the engine leaves
their aliases as they are). Other files are unaffected either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from watchfiles import Change, awatch

from controller.document.errors import SpecError
from controller.document.loader import (
    FileCache,
    InvalidRollout,
    LoadedRollout,
    Placement,
    load_paths,
    written_placement,
)
from controller.runtime.desired import DesiredState, Entry, desired_state

SUFFIXES = (".yaml", ".yml")


def _is_document(_change: Change, path: str) -> bool:
    return path.endswith(SUFFIXES)


class FileSource:
    """Loads ``root`` into a ``DesiredState`` and follows its changes."""

    def __init__(
        self,
        root: Path,
        *,
        rescan_interval: float = 30.0,
        debounce_ms: int = 50,
        placement: Placement = written_placement,
    ) -> None:
        """``placement``: where each rollout's function lives (the daemon's resolved scopes), so one
        alias name in two accounts is not taken for a duplicate."""
        self.root = root
        self.placement = placement
        self.rescan_interval = rescan_interval
        self.debounce_ms = debounce_ms
        # file -> the rollouts it last declared while valid: what an invalid file holds.
        self._last_valid: dict[str, list[LoadedRollout]] = {}
        self._last: DesiredState | None = None
        # What each file gave last time: a rescan parses only the files whose text changed.
        self._files = FileCache()

    def scan(self) -> DesiredState:
        """Load every document now (blocking file I/O: call it in a thread from async code)."""
        result = load_paths([self.root], placement=self.placement, cache=self._files)
        for file in list(self._last_valid):
            if file not in result.files:
                del self._last_valid[file]  # removed: its rollouts stop being managed
        errors = result.errors_by_file
        for file in result.files:
            if file not in errors:
                self._last_valid[file] = result.rollouts_in(file)
        self._last = self._desired(errors, result.invalid)
        return self._last

    def _desired(self, errors: dict[str, list[SpecError]], invalid: list[InvalidRollout]) -> DesiredState:
        by_key = {broken.key: broken for broken in invalid}
        attributed = {error for broken in invalid for error in broken.errors}
        entries: dict[str, Entry] = {}
        for file, loaded in sorted(self._last_valid.items()):
            for rollout in loaded:
                spec, key = rollout.spec, rollout.spec.key
                # Held on its last valid spec: with its own errors when the broken document still says
                # who it is, else (a YAML syntax error, say) with the file's.
                own = by_key[key].errors if key in by_key else errors.get(file, ())
                held = tuple(str(error) for error in own) if file in errors else ()
                entries[key] = Entry(key, spec, held, spec.function_name, spec.alias, rollout.location)
        for broken in invalid:
            if broken.key not in entries:
                # Never valid, or its file is new: held and shown under its own name all the same.
                errors_text = tuple(str(error) for error in broken.errors)
                entries[broken.key] = Entry(
                    broken.key, broken.spec, errors_text, broken.function_name, broken.alias, broken.file
                )
        unreadable: dict[str, tuple[str, ...]] = {}
        for file, problems in errors.items():
            unattributed = [error for error in problems if error not in attributed]
            if unattributed and not self._last_valid.get(file):
                unreadable[file] = tuple(str(error) for error in unattributed)
        return desired_state(entries.values(), unreadable=unreadable, placement=self.placement)

    async def watch(self, stop: asyncio.Event | None = None) -> AsyncIterator[DesiredState]:
        """Yield a new ``DesiredState`` whenever the directory's meaning changes (not on every event)."""
        async for _ in awatch(
            self.root,
            watch_filter=_is_document,
            debounce=self.debounce_ms,
            stop_event=stop,
            rust_timeout=int(self.rescan_interval * 1000),
            yield_on_timeout=True,  # the periodic rescan
        ):
            before = self._last
            state = await asyncio.to_thread(self.scan)
            if state != before:
                yield state
