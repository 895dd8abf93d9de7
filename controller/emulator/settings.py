"""Run-time settings of the strict local AWS emulator.

Kept in one small mutable object so that tests, the demo and the HTTP control endpoint
(``POST /_emulator/config``) can change timings of a running emulator without restarting it.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any


@dataclasses.dataclass
class EmulatorSettings:
    """Tunable behaviour of the emulator.

    Real AWS takes minutes to allocate provisioned concurrency and evaluates alarms once per period
    (a minute, typically); tests need the same state machine in (fractions of) seconds, so both are
    settings.
    """

    #: Seconds a provisioned-concurrency config stays IN_PROGRESS before it is READY.
    provisioned_concurrency_delay: float = 0.5
    #: Wall-clock seconds per second of alarm period: alarms are evaluated every ``Period x scale``
    #: seconds, over datapoints bucketed in periods of that length (1.0: CloudWatch's own clock).
    alarm_period_scale: float = 1.0
    #: False stops the evaluation timer; ``Emulator.evaluate_alarms()`` still evaluates on demand.
    alarm_evaluation: bool = True
    #: Seed of the draws Invoke makes (weighted routing, failures, slow calls); None: unseeded.
    invoke_seed: int | None = None
    #: A version whose behaviour asks for a real sleep sleeps at most this many seconds per Invoke.
    invoke_sleep_cap: float = 1.0
    #: Account-wide concurrency limit used to validate reserved concurrency (AWS default 1000).
    account_concurrency_limit: int = 1000
    #: Unreserved concurrency AWS always keeps free (PutFunctionConcurrency refuses to go below it).
    minimum_unreserved_concurrency: int = 100
    #: Seconds a new DynamoDB table stays CREATING (item operations on it: ResourceNotFoundException);
    #: AWS takes seconds.
    table_creation_delay: float = 0.5
    #: Keep at most this many call records (oldest dropped first) so long demos stay bounded.
    call_log_limit: int = 100_000

    def update(self, **changes: Any) -> None:
        """Apply known fields from ``changes``; unknown names raise ``ValueError``."""
        names = {f.name: f for f in dataclasses.fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown emulator setting: {key}")
            current = getattr(self, key)
            if isinstance(current, bool) and not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false")
            if key in _OPTIONAL:  # None by default: None, or a value of the field's type
                setattr(self, key, None if value is None else _OPTIONAL[key](value))
            else:
                setattr(self, key, type(current)(value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Fields whose default is None, with the type a value is converted to.
_OPTIONAL: dict[str, type] = {"invoke_seed": int}

#: Serialises the strict checks with the moto writes they guard: moto's server is threaded, and a
#: RevisionId compare-then-write must be atomic or two concurrent UpdateAlias calls could both pass.
WRITE_LOCK = threading.RLock()
