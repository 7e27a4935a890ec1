"""Benchmarks of the detector's own stages, run by ``vigil bench`` as ``python -m`` children."""
