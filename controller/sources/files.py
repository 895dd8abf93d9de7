"""The GitOps source: a directory of LambdaRollout documents, kept in step with the disk.

The directory is usually a git checkout refreshed by git-sync, Argo CD, Flux or ``git pull``; a
commit that bumps ``version:`` is a deployment. Every ``*.yaml`` / ``*.yml`` below it (recursive)
is loaded; changes are seen at once through ``watchfiles`` and a periodic rescan is a safety net
for file systems where notifications get lost (network mounts, symlink swaps).

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

from controller.sources import DesiredState
from controller.spec.loader import LoadedRollout, load_paths
from controller.spec.model import RolloutSpec

SUFFIXES = (".yaml", ".yml")


def _is_document(_change: Change, path: str) -> bool:
    return path.endswith(SUFFIXES)


class FileSource:
    """Loads ``root`` into a ``DesiredState`` and follows its changes."""

    def __init__(self, root: Path, *, rescan_interval: float = 30.0, debounce_ms: int = 50) -> None:
        self.root = root
        self.rescan_interval = rescan_interval
        self.debounce_ms = debounce_ms
        # file -> the rollouts it last declared while valid: what an invalid file holds.
        self._last_valid: dict[str, list[LoadedRollout]] = {}
        self._last: DesiredState | None = None

    def scan(self) -> DesiredState:
        """Load every document now (blocking file I/O: call it in a thread from async code)."""
        result = load_paths([self.root])
        errors = {file: tuple(str(e) for e in errs) for file, errs in result.errors_by_file.items()}
        for file in list(self._last_valid):
            if file not in result.files:
                del self._last_valid[file]  # removed: its rollouts stop being managed
        for file in result.files:
            if file not in errors:
                self._last_valid[file] = result.rollouts_in(file)
        self._last = self._desired(errors)
        return self._last

    def _desired(self, errors: dict[str, tuple[str, ...]]) -> DesiredState:
        rollouts: dict[str, RolloutSpec] = {}
        origins: dict[str, str] = {}
        held: dict[str, tuple[str, ...]] = {}
        orphans: dict[str, tuple[str, ...]] = {}
        for file in sorted(set(self._last_valid) | set(errors)):
            previous = self._last_valid.get(file, [])
            for loaded in previous:
                rollouts[loaded.spec.key] = loaded.spec
                origins[loaded.spec.key] = loaded.location
                if file in errors:
                    held[loaded.spec.key] = errors[file]
            if file in errors and not previous:
                orphans[file] = errors[file]
        return DesiredState(rollouts=rollouts, held=held, orphan_errors=orphans, origins=origins)

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
