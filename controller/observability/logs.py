"""Logging for people and for log pipelines: JSON lines in containers, text on a terminal, no secrets.

- ``configure_logging`` installs one stderr handler on the root logger; JSON is the default when
  stderr is not a terminal (a container, a CI job), text when someone is watching.
- ``rollout_logger`` binds a rollout's identity (namespace, name, function, alias, and versions or
  phase when known) to every line, so one rollout's story can be filtered out of a busy controller.
- ``RedactingFilter`` sits on the handler, not on a logger: filters on a logger do not see records
  that propagate from child loggers (boto3, aiohttp), and credentials most often leak from those.
  It scrubs the message, the extra fields and formatted tracebacks. A SigV4 ``Authorization``
  header is dropped whole (botocore prints it at DEBUG as bytes, ``b'AWS4-HMAC-SHA256 Credential=…,
  Signature=…'``), and so is any ``Signature`` botocore prints on its own.
- Libraries that log routine events at INFO (botocore's "Found credentials in environment
  variables" on every command, watchfiles' "1 change detected" on every edit, aiohttp's access log
  of every scrape, kopf's handler bookkeeping) are held at WARNING unless the level is DEBUG, so
  the controller's own INFO lines are what an operator reads.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from controller.document.model import RolloutSpec

LogFormat = Literal["json", "text"]
REDACTED = "[REDACTED]"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# Key names whose values are secrets wherever they appear (key=value, "key": "value", headers).
_SECRET_KEYS = (
    r"aws_secret_access_key|secret_access_key|secretaccesskey|aws_session_token|session_token|sessiontoken"
    r"|x-amz-security-token|security_token|securitytoken|authorization|password|passwd|client_secret"
    r"|api_key|apikey|secret|token"
)
# Patterns run in turn over the same text; a value an earlier one replaced must not be matched again.
_ALREADY = re.escape(REDACTED)
_SECRET_KEY_NAME = re.compile(rf"^(?:{_SECRET_KEYS})$", re.IGNORECASE)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization headers: the value runs to the end of the quoted string or line (SigV4 has commas);
    # botocore's DEBUG dump of a request quotes header values as bytes (b'...'), hence the optional b.
    (re.compile(r"""(\bauthorization["']?\s*[:=]\s*(?:b?["'])?)[^"'\r\n]+""", re.IGNORECASE), rf"\1{REDACTED}"),
    # A request signature anywhere else: botocore's "Signature:\n<hex>" DEBUG line, presigned URLs'
    # X-Amz-Signature=<hex>: anyone holding one may replay that request for up to 15 minutes.
    (re.compile(r"""(\b(?:x-amz-)?signature["']?\s*[:=]\s*b?["']?)[0-9a-f]{64}\b""", re.IGNORECASE), rf"\1{REDACTED}"),
    # key=value / key: value / "key": "value" for secret-named keys.
    (
        re.compile(
            rf"""(\b(?:{_SECRET_KEYS})["']?\s*[:=]\s*(?:b?["'])?)(?!(?:b?["'])?{_ALREADY})[^\s"',;&}}\]]+""",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(rf"\b(bearer\s+)(?!{_ALREADY})[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), rf"\1{REDACTED}"),
    # One-click gate links (controller.notify.links): the token in the path is a capability. Also
    # URL-encoded, as botocore's DEBUG lines show an SNS message inside a form body.
    (
        re.compile(rf"((?:/|%2F)v1(?:/|%2F)gate(?:/|%2F))(?!{_ALREADY})[A-Za-z0-9_\-.]+", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    # AWS access key ids (long-term AKIA, temporary ASIA and the other IAM unique-id prefixes).
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"), REDACTED),
    # STS session tokens start with these base64 prefixes.
    (re.compile(r"\b(?:FQoG|FwoG|IQoJ)[A-Za-z0-9/+=]{20,}"), REDACTED),
    # A free-standing 40-character secret access key: mixed case and digits (so hex digests such as
    # git or SHA-1 ids, all lower case, are left alone), bounded by non-base64 characters.
    (
        re.compile(
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[0-9])"
            r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
        REDACTED,
    ),
)


def redact(text: str) -> str:
    """``text`` with credentials and tokens replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY_NAME.match(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v) for v in value]
    return value


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard attributes (from ``extra=`` or an adapter)."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """Scrub credentials from a record's message, extra fields and traceback; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in extra_fields(record).items():
            setattr(record, key, _redact_value(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, the extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A readable line for a terminal, with the extra fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields, not before them
        suffix = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {suffix}{sep}{tail}"


_HANDLER_MARK = "_lambda_rollouts_handler"
# Loggers (and their children) whose INFO lines are routine library chatter, not controller events.
QUIET_LIBRARIES = ("boto3", "botocore", "urllib3", "aiohttp.access", "watchfiles", "kopf")


def configure_logging(
    format: LogFormat | None = None,
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the controller's handler on the root logger (replacing one installed before).

    ``format`` None picks JSON when the stream is not a terminal, text when it is. Below DEBUG the
    ``QUIET_LIBRARIES`` log only warnings and errors; at DEBUG everything they say gets through.
    """
    stream = stream if stream is not None else sys.stderr
    if format is None:
        format = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    library_level = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    return handler


class RolloutLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that adds a rollout's fields to every line, merged with call-time ``extra``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs

    def bind(self, **fields: Any) -> RolloutLogger:
        """A new adapter with more (or changed) fields, e.g. once the phase or versions are known."""
        merged = {**(self.extra or {}), **{k: v for k, v in fields.items() if v is not None}}
        return RolloutLogger(self.logger, merged)


def rollout_logger(logger: logging.Logger, spec: RolloutSpec, **fields: Any) -> RolloutLogger:
    """``logger`` with the rollout's namespace, name, function and alias (and non-None ``fields``) on every line.

    The name is logged as ``rollout``: ``name`` is taken by the standard record (the logger's name).

    Typical fields: ``phase``, ``stable_version``, ``canary_version``.
    """
    base: dict[str, Any] = {
        "namespace": spec.namespace,
        "rollout": spec.name,
        "function": spec.function_name,
        "alias": spec.alias,
    }
    return RolloutLogger(logger, base).bind(**fields)
