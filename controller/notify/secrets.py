"""Reading the secrets the notifications config names: environment variables and files, never logged.

A secret is read when the controller starts (``check_secrets``: every reference at once, each problem
one line naming the variable or file and where the config names it, never the value) and again at
each send, so a rotated Kubernetes Secret (the kubelet swaps the mounted file) is picked up without a
restart. Files are re-read only when their identity or modification time changed: one ``stat`` per
send, no reading, no watcher thread.

Values are stripped of surrounding whitespace: ``kubectl create secret --from-file`` and editors
leave a trailing newline that is never part of a URL or a key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from controller.document.errors import SpecError

from .config import Links, NotificationConfig, SecretRef, SlackTarget, TeamsTarget, WebhookTarget, url_problem

__all__ = ["MIN_SIGNING_KEY_BYTES", "SecretError", "SecretReader", "check_secrets"]

#: A signing key shorter than this could be guessed offline from one link; 32 bytes is HMAC-SHA256's own size.
MIN_SIGNING_KEY_BYTES = 32
#: Secrets are short; a bigger file is a mistake (a whole kubeconfig mounted at the wrong path).
MAX_SECRET_BYTES = 64 * 1024


class SecretError(Exception):
    """A secret that cannot be read; the message names where it should be, never what it is."""


@dataclass(frozen=True)
class _Cached:
    stamp: tuple[int, int, int]
    value: str


class SecretReader:
    """Reads ``SecretRef`` values from ``environ`` (default: the process environment) and files."""

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, _Cached] = {}

    def read(self, ref: SecretRef) -> str:
        """The secret's current value; raises ``SecretError`` when it is unset, empty or unreadable."""
        if ref.env is not None:
            value = self._environ.get(ref.env)
            if value is None:
                raise SecretError(f"environment variable {ref.env} is not set")
        else:
            value = self._read_file(str(ref.file))
        value = value.strip()
        if not value:
            raise SecretError(f"{ref.describe()} is empty")
        return value

    def _read_file(self, path: str) -> str:
        try:
            info = os.stat(path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self._files.get(path)
            if cached is not None and cached.stamp == stamp:
                return cached.value
            if info.st_size > MAX_SECRET_BYTES:
                raise SecretError(f"file {path} is larger than {MAX_SECRET_BYTES} bytes: not a secret value")
            with open(path, "rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as error:
            raise SecretError(f"file {path}: {error.strerror or type(error).__name__}") from None
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"file {path} is not UTF-8 text") from None
        self._files[path] = _Cached(stamp, value)
        return value


def _references(config: NotificationConfig) -> Iterator[tuple[SecretRef, str]]:
    """Every secret the config names, with what it is for: ``url``, ``key`` or ``value``."""
    for target in config.targets:
        if isinstance(target, SlackTarget | TeamsTarget):
            yield target.url, "url"
        elif isinstance(target, WebhookTarget):
            if target.url_from is not None:
                yield target.url_from, "url"
            if target.secret is not None:
                yield target.secret, "value"
            for header in target.headers:
                if header.value_from is not None:
                    yield header.value_from, "value"
    if isinstance(config.links, Links):
        yield config.links.signing_key, "key"


def check_secrets(config: NotificationConfig, reader: SecretReader) -> list[SpecError]:
    """Read every secret ``config`` names once; a ``SpecError`` per problem (none when all are usable)."""
    errors: list[SpecError] = []
    for ref, use in _references(config):
        try:
            value = reader.read(ref)
        except SecretError as error:
            errors.append(ref.origin.error(str(error)))
            continue
        if use == "url" and (why := url_problem(value)) is not None:
            errors.append(ref.origin.error(f"the URL in {ref.describe()} {why}"))
        elif use == "key" and len(value.encode("utf-8")) < MIN_SIGNING_KEY_BYTES:
            message = (
                f"the signing key in {ref.describe()} is shorter than {MIN_SIGNING_KEY_BYTES} bytes; "
                "generate one with: openssl rand -base64 32"
            )
            errors.append(ref.origin.error(message))
    return errors
