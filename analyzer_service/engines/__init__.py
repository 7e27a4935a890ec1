"""Language-model engines behind ``analyzer_service.engine.Engine``: vLLM in process or HTTP."""
