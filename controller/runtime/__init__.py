"""The imperative shell's loop: the asyncio engine that reconciles rollouts against AWS.

``engine.Engine`` schedules ticks and shares reads between rollouts; ``reconcile.Reconciler`` is one
rollout's observe -> decide -> act -> record; ``observe`` and ``records`` keep AWS reads and writes
to the minimum; ``sink.StatusSink`` is the seam every output (metrics, Kubernetes status, logs)
plugs into; ``preview`` runs the same steps read-only for ``plan`` and ``get``.
"""
