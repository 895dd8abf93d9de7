"""The pure core: plans, the durable record, and ``decide``. Imports nothing from ``aws`` or ``sources``."""
