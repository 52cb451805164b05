"""Fixtures of the bench tests: the timed fake server lives in bench_fake_server.py (a unique module name, so
that
test modules can import its types whatever other conftest.py files the suite has)."""

from bench_fake_server import fake_server, server

__all__ = ["fake_server", "server"]
