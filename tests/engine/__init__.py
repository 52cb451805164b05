"""Tests of cocina.engine (a package so test module names do not collide with other test folders)."""
