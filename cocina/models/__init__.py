"""Model helpers: tiny random-weight models for tests, and model id resolution (no downloads)."""
