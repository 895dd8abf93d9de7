"""A strict local AWS for tests, benchmarks and the demo: moto plus the rules AWS enforces.

Plain moto accepts requests real AWS refuses (stale RevisionIds, invalid routing weights), lacks
provisioned concurrency, and never evaluates alarms. A controller tested against it could pass
here and fail in production. This package extends moto at start-up (no fork) so that it answers
like AWS, records every call, and can sit behind a fault-injection proxy (:mod:`.proxy`).

Usage::

    emu = Emulator.start(port=0, settings=EmulatorSettings(provisioned_concurrency_delay=1.0))
    lam = emu.client("lambda")
    ...
    emu.stop()
"""

from .app import CallRecord
from .server import Emulator
from .settings import EmulatorSettings

__all__ = ["CallRecord", "Emulator", "EmulatorSettings"]
