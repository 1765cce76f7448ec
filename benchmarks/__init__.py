"""Benchmarks of the licensing agent, the vendor activation server and the floating
license server, each against a baseline measured in the same run. Entry point:
``python -m benchmarks`` (see :mod:`benchmarks.run`); results: docs/benchmarks.md.
"""
