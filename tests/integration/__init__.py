"""Integration tests against the strict emulator; shared helpers live in ``tests.integration.helpers``."""
