"""Tools for tests and benchmarks (a tiny random Gemma 3 builder); never imported by services.

Its heavy dependencies come with the ``llm`` extra and are imported only when a tool runs.
"""
