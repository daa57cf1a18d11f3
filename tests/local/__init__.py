"""Tests of openai_utils.local, one module per module. This file makes them the package `local`,
so their names cannot collide with a tests/test_*.py of the same name."""
