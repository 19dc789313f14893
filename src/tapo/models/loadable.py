"""Whether a local model directory can be loaded, read from its files in milliseconds, before anything loads.

``from_pretrained`` finds each of these problems only once it reaches it, as a traceback: a ``config.json`` that is
a list (``TypeError``), an unknown ``model_type`` (``ValueError`` naming every known one), no weights
(``OSError``), no tokenizer (a request to install sentencepiece), truncated weights (``SafetensorError``).
:func:`check_loadable` turns each into :class:`ModelDirError`: one line naming the file and saying what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

from tapo.models.integrity import CorruptFileError, check_files

# What from_pretrained reads its weights from: one file, or an index of shards
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# A fast tokenizer's file, a sentencepiece model, or a BPE vocabulary (with its merges.txt)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class ModelDirError(ValueError):
    """A model directory that would not load; the message names the file and the fix."""


def _config(directory: Path) -> dict[str, object]:
    path = directory / "config.json"
    if not path.is_file():
        raise ModelDirError(
            f"{directory} has no config.json (an empty or partly copied model); copy the model again, or give the "
            "run directory so its newest complete checkpoint is used"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelDirError(f"{path} does not read as JSON ({error}); copy it again from the model's source") from None
    if not isinstance(config, dict):
        raise ModelDirError(
            f"{path} holds a JSON {type(config).__name__}, not a model config (an object with model_type); "
            "copy it again from the model's source"
        )
    return config


def check_loadable(directory: Path) -> None:
    """Raise :class:`ModelDirError` unless ``directory`` has a model config transformers knows, weights that read
    and a tokenizer."""
    from transformers import __version__
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    directory = Path(directory)
    model_type = _config(directory).get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        raise ModelDirError(
            f"{directory / 'config.json'}: model_type={model_type!r} is not a model type transformers {__version__} "
            "knows; use a model of a known type (llama, qwen2, ...) or a transformers that has it"
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES) and not any(directory.glob("*.safetensors")):
        raise ModelDirError(
            f"{directory} has a config.json but no weights ({' or '.join(WEIGHT_FILES[::2])}); copy the weights "
            "beside it, or give the run directory so its newest complete checkpoint is used"
        )
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ModelDirError(
            f"{directory} has no tokenizer ({', '.join(TOKENIZER_FILES)}); copy the tokenizer files of the model "
            "it was trained from beside its weights"
        )
    try:
        check_files(directory)
    except CorruptFileError as error:
        raise ModelDirError(f"{error}; copy it again, or use an earlier checkpoint of the run") from None
