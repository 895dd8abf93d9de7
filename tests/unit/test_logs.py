"""Unit tests of the logging set-up: JSON lines carry the rollout's fields, secrets never get out."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from controller.document.model import AllAtOnceStrategy, RolloutSpec
from controller.observability.logs import QUIET_LIBRARIES, REDACTED, configure_logging, redact, rollout_logger

SPEC = RolloutSpec(
    namespace="payments", name="checkout", function_name="checkout-fn", alias="live", strategy=AllAtOnceStrategy()
)
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
TEMP_KEY = "ASIAY34FZKBOKMUTVV7A"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEMv//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6mLmY"


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in libraries.items():
        logging.getLogger(name).setLevel(library_level)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_root")
def test_json_lines_carry_rollout_fields() -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    log = rollout_logger(logging.getLogger("controller.test"), SPEC, phase="Progressing", canary_version=None)
    log.info("weight set to %d%%", 10, extra={"weight": 10})
    log.bind(canary_version="7").warning("paused")
    first, second = json_lines(stream)
    assert first["message"] == "weight set to 10%"
    assert first["level"] == "info"
    assert first["logger"] == "controller.test"
    assert "timestamp" in first
    assert {k: first[k] for k in ("namespace", "rollout", "function", "alias", "phase", "weight")} == {
        "namespace": "payments",
        "rollout": "checkout",
        "function": "checkout-fn",
        "alias": "live",
        "phase": "Progressing",
        "weight": 10,
    }
    assert "canary_version" not in first  # None fields are left out, not logged as null
    assert second["canary_version"] == "7"
    assert second["phase"] == "Progressing"


@pytest.mark.usefixtures("restore_root")
def test_default_format_follows_the_terminal() -> None:
    piped, terminal = io.StringIO(), TTY()
    configure_logging(None, stream=piped)
    logging.getLogger("x").info("hello")
    configure_logging(None, stream=terminal)  # replaces the first handler instead of adding one
    rollout_logger(logging.getLogger("x"), SPEC).info("hello")
    assert json.loads(piped.getvalue())["message"] == "hello"
    line = terminal.getvalue()
    assert "INFO" in line and "hello" in line and "rollout=checkout" in line
    assert len(piped.getvalue().splitlines()) == 1


@pytest.mark.usefixtures("restore_root")
def test_secrets_are_redacted_from_messages_fields_and_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)  # DEBUG: botocore's INFO lines get through
    log = logging.getLogger("botocore.test")  # a child logger: the filter sits on the handler
    log.info("using key %s with secret %s", ACCESS_KEY, SECRET_KEY)
    log.info("headers: {'Authorization': 'AWS4-HMAC-SHA256 Credential=%s/20260101, Signature=abc'}", TEMP_KEY)
    log.info("env", extra={"aws_session_token": SESSION_TOKEN, "config": {"password": "hunter2", "region": "eu"}})
    try:
        raise RuntimeError(f"token={SESSION_TOKEN}")
    except RuntimeError:
        log.exception("failed")
    output = stream.getvalue()
    for secret in (ACCESS_KEY, TEMP_KEY, SECRET_KEY, SESSION_TOKEN, "hunter2", "Signature=abc"):
        assert secret not in output
    lines = json_lines(stream)
    assert lines[2]["aws_session_token"] == REDACTED
    assert lines[2]["config"] == {"password": REDACTED, "region": "eu"}
    assert "RuntimeError" in str(lines[3]["exception"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key {ACCESS_KEY}.", f"key {REDACTED}."),
        (f"aws_secret_access_key = {SECRET_KEY}", f"aws_secret_access_key = {REDACTED}"),
        ('{"SessionToken": "abc.def"}', f'{{"SessionToken": "{REDACTED}"}}'),
        ("X-Amz-Security-Token: abc", f"X-Amz-Security-Token: {REDACTED}"),
        ("Authorization: Bearer abc.def", f"Authorization: {REDACTED}"),
        ("curl -H 'bearer xyz'", f"curl -H 'bearer {REDACTED}'"),
        (f"raw {SECRET_KEY} end", f"raw {REDACTED} end"),
    ],
)
def test_redact_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",  # 40 hex chars, lower case: a digest, not a key
        "CodeSha256 Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5Kz0=",
        "alias live -> version 12 at 10%",
        "the token bucket for lambda-control waited 0.2s",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


# What botocore's endpoint logs at DEBUG before each request: header values are bytes.
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
BOTOCORE_REQUEST = (
    "Sending http request: <AWSPreparedRequest stream_output=False, method=GET, "
    "url=https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/, headers={'User-Agent': b'Boto3/1.44.8', "
    f"'X-Amz-Date': b'20260101T000000Z', 'X-Amz-Security-Token': b'{SESSION_TOKEN}', "
    f"'Authorization': b'AWS4-HMAC-SHA256 Credential={TEMP_KEY}/20260101/us-east-1/lambda/aws4_request, "
    f"SignedHeaders=host;x-amz-date;x-amz-security-token, Signature={SIGNATURE}', "
    "'amz-sdk-invocation-id': b'0b9d1f0e'}>"
)


def test_a_signed_request_dump_loses_its_whole_authorization_header() -> None:
    scrubbed = redact(BOTOCORE_REQUEST)
    assert f"'Authorization': b'{REDACTED}'," in scrubbed
    assert f"'X-Amz-Security-Token': b'{REDACTED}'" in scrubbed
    for secret in (SIGNATURE, TEMP_KEY, SESSION_TOKEN, "Credential=", "SignedHeaders="):
        assert secret not in scrubbed
    assert "'X-Amz-Date': b'20260101T000000Z'" in scrubbed  # the rest of the dump stays readable


@pytest.mark.parametrize(
    "text",
    [f"Signature:\n{SIGNATURE}", f"https://bucket/key?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=60"],
)
def test_signatures_printed_on_their_own_are_redacted(text: str) -> None:
    assert SIGNATURE not in redact(text)
    assert REDACTED in redact(text)


@pytest.mark.usefixtures("restore_root")
@pytest.mark.parametrize("library", ["botocore.credentials", "watchfiles.main", "aiohttp.access", "kopf.objects"])
def test_library_info_lines_are_held_back_unless_debug(library: str) -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    logging.getLogger(library).info("Found credentials in environment variables.")
    logging.getLogger(library).warning("a library warning")
    logging.getLogger("controller.engine").info("a controller line")
    assert [line["message"] for line in json_lines(stream)] == ["a library warning", "a controller line"]

    debug = io.StringIO()
    configure_logging("json", "DEBUG", stream=debug)
    logging.getLogger(library).info("1 change detected")
    assert [line["message"] for line in json_lines(debug)] == ["1 change detected"]


@pytest.mark.usefixtures("restore_root")
def test_a_real_signed_call_at_debug_leaks_no_credential() -> None:
    """botocore at DEBUG, against the strict emulator: neither the signature nor the keys get out."""
    import boto3

    from controller.emulator import Emulator

    access_key, secret = "LRTESTACCESSKEYID001", "lr-test-secret-access-key-0001"  # shapes no generic pattern knows
    sent: list[str] = []

    def keep_authorization(request: Any, **_: Any) -> None:
        sent.append(request.headers["Authorization"].decode())

    with Emulator.start(port=0) as emulator:
        stream = io.StringIO()
        configure_logging("text", "DEBUG", stream=stream)
        client = boto3.client(
            "lambda",
            endpoint_url=emulator.url,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
        )
        client.meta.events.register("before-send.lambda", keep_authorization)
        client.list_functions()
    output = stream.getvalue()
    (authorization,) = sent
    signature = authorization.rpartition("Signature=")[2]
    assert len(signature) == 64
    assert "Sending http request" in output and "Signature:" in output  # botocore did log the request
    for leaked in (signature, access_key, secret, "Credential="):
        assert leaked not in output
