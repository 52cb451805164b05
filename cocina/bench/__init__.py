"""`cocina bench`: serving benchmark with vLLM's metric definitions (see docs/bench.md)."""
