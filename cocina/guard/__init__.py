"""The guard: API keys, rate limits and quotas, input and output scanners, AI disclosure, privacy mode, and a
verifiable audit log. No HTTP here: serving calls it through its `Gate` seam and the server's middleware calls
`Guard.authenticate`; the server renders what it decides (status codes, headers).
"""

from cocina.guard.config import GuardConfig, GuardConfigError, load_guard_config, parse_guard_config
from cocina.guard.guard import Guard
from cocina.guard.keys import Principal

__all__ = ["Guard", "GuardConfig", "GuardConfigError", "Principal", "load_guard_config", "parse_guard_config"]
