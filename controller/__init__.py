"""lambda-rollouts: a reconciliation controller for progressive delivery of AWS Lambda functions.

The package is shaped as a functional core and an imperative shell: ``spec`` and ``core`` are pure
(no I/O, no clock), ``aws``, ``sources`` and ``runtime`` do the I/O around them.
"""

__version__ = "0.1.0"
