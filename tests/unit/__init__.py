"""Unit tests of the pure core and spec layers; shared builders live in ``tests.unit.simulator``."""
