"""Language-model engines behind ``analyzer_service.engine.Engine``: vLLM in process or HTTP.

Kept empty: vLLM imports ``plugin`` from here in each of its processes, so importing the package
must stay cheap. ``catalog`` registers the built-in engines.
"""
