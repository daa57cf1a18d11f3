"""The embedded local model (`api_type = "local"`): llama.cpp in this process, no key, no network.

    from openai_utils import client, force_api_type
    force_api_type("local")
    client().send_message([{"role": "user", "content": "Name three colors."}])

One module per job; each imports only those above it in this list, so there is no circle:

- requirements.py: what to install (the engine, the converter, the model packages) and the
  hint that says how.
- paths.py: where files are: the per-user cache folder, the installed model packages, and the
  converted embedding model's content-derived name; lists other converted files.
- convert.py: writes the BERT (all-MiniLM-L6-v2) GGUF from the packaged files, once.
- specs.py: `ServerSpec`, which model and sizes the LOCAL_* settings ask for.
- server.py: `LocalServer`, one llama.cpp server in this process on 127.0.0.1; the shared chat
  and embedding servers; `stop_local_servers`.
- client.py: `LocalClient`, an OpenAIClient whose requests go to those servers and whose errors
  are reworded for them.
- install.py: `setup`, `status` and `demo`, behind `python -m openai_utils local ...`.

Importing this package is cheap: the engine (xllamacpp) and the converter's gguf, safetensors
and numpy are imported only when a server starts or a conversion runs.
"""

from __future__ import annotations

from .client import LocalClient
from .install import DemoRun, demo, setup, status
from .server import LocalServer, chat_server, embedding_server, stop_local_servers

__all__ = [
    "LocalClient",
    "DemoRun",
    "setup",
    "status",
    "demo",
    "LocalServer",
    "chat_server",
    "embedding_server",
    "stop_local_servers",
]
