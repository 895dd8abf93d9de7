"""What the controller tells people about itself: Prometheus metrics, health endpoints and logs.

``metrics.Metrics`` is the one place every figure is defined; ``http.ObservabilityServer`` serves it
with ``/healthz`` and ``/readyz``; ``logs`` configures JSON or text logging with secrets redacted.
The engine depends on these modules, never the other way round, so they import nothing from
``runtime``, ``aws`` or ``sources``.
"""
