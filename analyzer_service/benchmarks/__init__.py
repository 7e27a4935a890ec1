"""Benchmarks of the analyzer's own stages, run by ``vigil bench`` as ``python -m`` children.

Each module's ``python -m`` entry point takes its options as one JSON argument and prints its
figures as one JSON object on stdout.
"""
