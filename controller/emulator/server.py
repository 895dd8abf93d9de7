"""The strict local AWS as one object: start it, get clients, read the call log, stop it.

:class:`Emulator` runs moto's threaded server in-process with our WSGI layer in front of it and
the alarm evaluator beside it. Tests, the benchmark and the demo all start it the same way, so
they all meet the same strict rules.

moto keeps its state in module-level backends, so every emulator in one process shares AWS
state (the call log and settings are per emulator). Tests run one emulator per xdist worker
process, which gives each worker its own state and port.

Several accounts: moto serves each request in the account of the access key that signed it
(``testing`` and any other unknown key: 123456789012; an assumed role's temporary key: the role's
account). ``client(service, account=...)`` signs with the key of an administrator user the emulator
creates in that account, so a test can set up a second account (its functions, its roles, the
trust policies a controller meets) the way that account's own people would.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

import boto3
from moto.core.config import default_user_config
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from . import cloudwatch_ext, events_ext, lambda_ext, tagging_ext
from .alarm_eval import AlarmEvaluator
from .app import CallRecord, EmulatorApp
from .control import EmulatorControl, TrafficResult
from .dynamodb_ext import StrictDynamoDb
from .lambda_ext import StrictLambda
from .settings import WRITE_LOCK, EmulatorSettings

log = logging.getLogger(__name__)

REGION = "us-east-1"
#: moto's default account: where requests signed with unknown keys (``testing``) land.
DEFAULT_ACCOUNT = "123456789012"
#: The user whose access key signs a test's requests in another account.
_ADMIN_USER = "emulator-admin"
#: A trust policy Lambda accepts, for :meth:`Emulator.seed_function`.
LAMBDA_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


class _QuietHandler(MotoRequestHandler):
    """moto's handler without one stderr line per request (tests make thousands)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class _StrictMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose WSGI app is wrapped by :class:`EmulatorApp`."""

    def __init__(self, ip_address: str, port: int, wrap: Any) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._wrap = wrap

    def _server_entry(self) -> None:
        app = self._wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=_QuietHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def _apply_moto_config() -> None:
    """Lambda without Docker (the emulator serves Invoke); must hold before any function exists."""
    default_user_config["lambda"] = {"use_docker": False}


def zip_code(source: str) -> bytes:
    """A deployment package holding ``lambda_function.py`` with ``source``."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lambda_function.py", source)
    return buffer.getvalue()


class Emulator:
    """A running strict emulator. Create it with :meth:`start`."""

    def __init__(self, server: _StrictMotoServer, app: EmulatorApp, settings: EmulatorSettings) -> None:
        self._server = server
        self._app = app
        self._evaluator = AlarmEvaluator(settings)
        self.settings = settings
        host, port = server.get_host_and_port()
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        # account -> (access key id, secret) of its administrator user; emptied by ``reset``.
        self._keys: dict[str, tuple[str, str]] = {}

    @classmethod
    def start(cls, port: int = 0, host: str = "127.0.0.1", settings: EmulatorSettings | None = None) -> Emulator:
        """Start moto with the strict extensions on ``host:port`` (0 = any free port)."""
        settings = settings or EmulatorSettings()
        lambda_ext.install()
        cloudwatch_ext.install()
        tagging_ext.install()
        events_ext.install()
        _apply_moto_config()
        strict = StrictLambda(settings)
        strict_dynamodb = StrictDynamoDb(settings)
        # The WSGI app is built on the server thread, before the Emulator object exists; the
        # control endpoints reach the emulator through this list once it does.
        apps: list[EmulatorApp] = []
        emulators: list[Emulator] = []

        def wrap(inner: Any) -> EmulatorApp:
            app = EmulatorApp(
                inner,
                settings,
                strict,
                strict_dynamodb,
                on_reset=lambda: emulators[0].reset(),
                on_configure=lambda changes: emulators[0].configure(**changes),
            )
            apps.append(app)
            return app

        server = _StrictMotoServer(host, port, wrap)
        server.start()
        emulator = cls(server, apps[0], settings)
        emulators.append(emulator)
        emulator._evaluator.start()
        log.info("strict AWS emulator listening on %s", emulator.url)
        return emulator

    # ----- state -----

    def calls(self) -> list[CallRecord]:
        """Every AWS request served since start or the last :meth:`clear_calls`."""
        return self._app.calls.records()

    def clear_calls(self) -> None:
        self._app.calls.clear()

    def configure(self, **changes: Any) -> None:
        """Change settings at run time, e.g. ``configure(provisioned_concurrency_delay=0.2)``."""
        self.settings.update(**changes)
        if "alarm_period_scale" in changes or "alarm_evaluation" in changes:
            self._evaluator.wake()
        if "invoke_seed" in changes:
            self._app.strict_lambda.reseed()

    def reset(self) -> None:
        """Wipe all AWS state (moto's and ours) and the call log; settings stay."""
        from moto.moto_api._internal.models import moto_api_backend

        with WRITE_LOCK:
            moto_api_backend.reset()
            _apply_moto_config()
            self._app.strict_lambda.reset()
            self._app.strict_dynamodb.reset()
            self._app.calls.clear()
            self._keys.clear()

    def evaluate_alarms(self, at: datetime | None = None) -> None:
        """Evaluate every metric alarm now, or as at instant ``at``, over the periods closed by then.

        Tests use it (with ``alarm_evaluation=False``) to pick the instant instead of waiting for a
        period boundary.
        """
        self._evaluator.evaluate(at=at)

    # ----- Lambda traffic and behaviour (the emulator's own control endpoints) -----

    def control(self, region: str = REGION) -> EmulatorControl:
        return EmulatorControl(self.url, region=region)

    def set_behaviour(self, function: str, version: str, **behaviour: Any) -> None:
        """How ``version`` answers Invoke (``error_rate``, ``duration_ms``, ``slow_share``, ``slow_ms``, ...)."""
        self.control().set_behaviour(function, version, **behaviour)

    def traffic(self, function: str, qualifier: str | None = None, **amount: Any) -> TrafficResult:
        """``count`` (or ``rate`` + ``seconds``) invocations of ``function:qualifier``, recorded as real Invokes."""
        return self.control().traffic(function, qualifier, **amount)

    def stop(self) -> None:
        self._evaluator.stop()
        self._server.stop()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- clients and seeding -----

    def client(self, service: str, region: str = REGION, *, account: str | None = None, **kwargs: Any) -> Any:
        """A boto3 client bound to this emulator: dummy credentials (the default account), or those of
        an administrator of ``account``."""
        key, secret = ("testing", "testing") if account in (None, DEFAULT_ACCOUNT) else self.credentials(account)
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            **kwargs,
        )

    def credentials(self, account: str) -> tuple[str, str]:
        """The access key id and secret of an administrator user of ``account`` (created on first use)."""
        from moto.iam.models import iam_backends

        with WRITE_LOCK:
            keys = self._keys.get(account)
            if keys is None:
                backend = iam_backends[account]["aws"]
                user = backend.users.get(_ADMIN_USER) or backend.create_user(region_name=REGION, user_name=_ADMIN_USER)
                # Emulators in one process share moto's state: reuse the key another one created.
                key = user.access_keys[0] if user.access_keys else backend.create_access_key(_ADMIN_USER)
                keys = self._keys[account] = (key.access_key_id, key.secret_access_key)
            return keys

    def ensure_role(self, name: str = "lambda-rollouts-test-role", *, account: str | None = None) -> str:
        """Create (or find) an IAM role Lambda can assume; returns its ARN."""
        iam = self.client("iam", account=account)
        try:
            return str(iam.get_role(RoleName=name)["Role"]["Arn"])
        except iam.exceptions.NoSuchEntityException:
            return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"])

    def trusting_role(
        self, name: str, *, account: str, trusted: str = DEFAULT_ACCOUNT, external_id: str | None = None
    ) -> str:
        """Create a role in ``account`` that principals of account ``trusted`` may assume (with
        ``external_id`` when given, as a third party's role asks); returns its ARN."""
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{trusted}:root"},
            "Action": "sts:AssumeRole",
        }
        if external_id is not None:
            statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        iam = self.client("iam", account=account)
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=policy)["Role"]["Arn"])

    def seed_function(
        self,
        name: str,
        versions: int = 3,
        role: str | None = None,
        runtime: str = "python3.12",
        tags: dict[str, str] | None = None,
        account: str | None = None,
        region: str = REGION,
    ) -> list[str]:
        """Create ``name`` and publish ``versions`` distinct versions; returns their numbers.

        ``role`` is a role name or ARN (created when it is a name that does not exist yet);
        ``account`` and ``region`` say where (default: the default account, us-east-1).
        """
        role_arn = (
            role
            if role and role.startswith("arn:")
            else self.ensure_role(role or "lambda-rollouts-test-role", account=account)
        )
        lam = self.client("lambda", region, account=account)
        lam.create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=role_arn,
            Handler="lambda_function.handler",
            Code={"ZipFile": zip_code("def handler(event, context):\n    return {'version': 0}\n")},
            Description="seeded",
            Tags=tags or {},
        )
        published: list[str] = []
        for index in range(1, versions + 1):
            if index > 1:
                lam.update_function_code(
                    FunctionName=name,
                    ZipFile=zip_code(f"def handler(event, context):\n    return {{'version': {index}}}\n"),
                )
            published.append(str(lam.publish_version(FunctionName=name, Description=f"v{index}")["Version"]))
        return published

    def wait_for(self, predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``predicate()`` until it returns something truthy or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)
