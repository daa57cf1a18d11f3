"""The embedded local model (`api_type = "local"`): llama.cpp in this process, no key, no network."""

from __future__ import annotations

from .install import DemoRun, LocalClient, demo, setup, status

__all__ = ["LocalClient", "DemoRun", "setup", "status", "demo"]
