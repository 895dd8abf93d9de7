"""End-to-end tests with real servers and subprocesses; they reuse ``tests.integration.helpers``."""
