"""The test suite as a package, so shared helpers are imported by one name (``tests.integration.helpers``).

Packages give every test module a unique dotted name (pytest's rootdir is put on ``sys.path`` once),
so the end-to-end tests and the benchmark reuse the integration helpers without path tricks.
"""
