"""Read and write PEFT's on-disk LoRA format exactly: `adapter_config.json` + `adapter_model.safetensors`.

Keys follow PEFT: ``base_model.model.<module path>.lora_A.weight`` / ``...lora_B.weight``. Weights are only
ever read from safetensors; a pickled ``adapter_model.bin`` is refused, never unpickled. loragen's own
metadata travels in the safetensors header (key ``loragen``), so PEFT sees a plain LoRA config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loragen.bank._atomic import atomic_directory
from loragen.bank.errors import AdapterFormatError, AdapterShapeError
from loragen.bank.lora.adapter import LoraAdapter

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLED_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth", "pytorch_model.bin")
KEY_PREFIX = "base_model.model."
_A_SUFFIX, _B_SUFFIX = ".lora_A.weight", ".lora_B.weight"

# Config values loragen can represent; anything else is refused rather than silently mis-applied.
_UNSUPPORTED = {
    "use_dora": (False, None),
    "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None),
    "modules_to_save": (None, []),
    "layer_replication": (None, []),
}


def peft_key(module: str, factor: str) -> str:
    """PEFT's safetensors key for `module`'s `factor` ("A" or "B")."""
    return f"{KEY_PREFIX}{module}.lora_{factor}.weight"


def load_peft(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoraAdapter:
    """Load a PEFT LoRA adapter directory into a `LoraAdapter`.

    Args:
        path: directory holding adapter_config.json and adapter_model.safetensors.
        device: where the tensors are placed.

    Raises:
        AdapterFormatError: missing files, pickled weights, a non-LoRA or unsupported config, unreadable tensors.
        AdapterShapeError: tensors that disagree with the config's rank or with each other.
    """
    path = Path(path)
    if not path.is_dir():
        raise AdapterFormatError(f"{path}: not a directory; expected a PEFT adapter directory with {CONFIG_NAME}.")
    config = _read_config(path)
    tensors, header_meta = _read_tensors(path / WEIGHTS_NAME, path)
    lora_A, lora_B = _split_factors(tensors, path)
    metadata = json.loads(header_meta.get("loragen", "{}"))
    extra = {k: config[k] for k in ("task_type",) if config.get(k) is not None}
    if extra:
        metadata.setdefault("peft", {}).update(extra)
    try:
        adapter = LoraAdapter(
            base_model=config.get("base_model_name_or_path") or "",
            r=int(config["r"]),
            lora_alpha=float(config.get("lora_alpha", config["r"])),
            lora_A={m: t.to(device) for m, t in lora_A.items()},
            lora_B={m: t.to(device) for m, t in lora_B.items()},
            target_modules=_target_list(config.get("target_modules")),
            fan_in_fan_out=bool(config.get("fan_in_fan_out", False)),
            use_rslora=bool(config.get("use_rslora", False)),
            metadata=metadata,
        )
    except AdapterShapeError as err:
        raise AdapterShapeError(f"{path / WEIGHTS_NAME}: {err}") from None
    return adapter


def save_peft(adapter: LoraAdapter, path: str | os.PathLike, *, task_type: str | None = None) -> Path:
    """Write `adapter` as a PEFT directory that `peft.PeftModel.from_pretrained` loads.

    The directory is written to a temporary sibling and renamed into place, so a crash never leaves a
    half-written adapter. An existing adapter directory at `path` is replaced.

    Returns:
        The directory written.
    """
    adapter.check_finite()
    config = peft_config(adapter, task_type=task_type)
    tensors: dict[str, torch.Tensor] = {}
    for m, a, b in adapter.items():
        tensors[peft_key(m, "A")] = a.detach().contiguous().cpu()
        tensors[peft_key(m, "B")] = b.detach().contiguous().cpu()
    with atomic_directory(path, CONFIG_NAME, AdapterFormatError) as tmp:
        save_file(tensors, tmp / WEIGHTS_NAME, metadata={"format": "pt", "loragen": json.dumps(adapter.metadata)})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(path)


def peft_config(adapter: LoraAdapter, *, task_type: str | None = None) -> dict[str, Any]:
    """The adapter_config.json content PEFT expects for `adapter`."""
    task_type = task_type or adapter.metadata.get("peft", {}).get("task_type")
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": adapter.base_model,
        "r": adapter.r,
        "lora_alpha": adapter.lora_alpha,
        "target_modules": sorted(adapter.target_modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": adapter.fan_in_fan_out,
        "use_rslora": adapter.use_rslora,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": None,
        "layers_pattern": None,
        "revision": None,
    }


def _read_config(path: Path) -> dict[str, Any]:
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise AdapterFormatError(f"{path}: missing {CONFIG_NAME}; is this a PEFT adapter directory?")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterFormatError(f"{config_file}: not valid JSON ({err}).") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{config_file}: expected a JSON object, got {type(config).__name__}.")
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}; only LORA adapters are supported")
    if "r" not in config:
        problems.append("no rank 'r'")
    elif not isinstance(config["r"], int) or config["r"] < 1:
        problems.append(f"r must be a positive integer, got {config['r']!r}")
    for key, allowed in _UNSUPPORTED.items():
        if config.get(key, allowed[0]) not in allowed:
            problems.append(f"{key}={config[key]!r} is not supported by loragen")
    if problems:
        raise AdapterFormatError(f"{config_file}: " + "; ".join(problems) + ".")
    return config


def _read_tensors(weights: Path, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not weights.is_file():
        pickled = [name for name in PICKLED_WEIGHTS if (path / name).exists()]
        if pickled:
            raise AdapterFormatError(
                f"{path}: weights are in {pickled[0]}, a pickle; loragen never unpickles weights. Convert them "
                f"to {WEIGHTS_NAME} where you trust the file (e.g. re-save with peft's save_pretrained)."
            )
        raise AdapterFormatError(f"{path}: missing {WEIGHTS_NAME}.")
    try:
        with safe_open(str(weights), framework="pt") as f:
            header_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises several types for a malformed header/body
        raise AdapterFormatError(f"{weights}: not a readable safetensors file ({err}).") from None
    return tensors, header_meta


def _split_factors(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict]:
    lora_A, lora_B, unknown = {}, {}, []
    for key, t in tensors.items():
        if key.startswith(KEY_PREFIX) and key.endswith(_A_SUFFIX):
            lora_A[key[len(KEY_PREFIX) : -len(_A_SUFFIX)]] = t
        elif key.startswith(KEY_PREFIX) and key.endswith(_B_SUFFIX):
            lora_B[key[len(KEY_PREFIX) : -len(_B_SUFFIX)]] = t
        else:
            unknown.append(key)
    if unknown:
        raise AdapterFormatError(
            f"{path / WEIGHTS_NAME}: {len(unknown)} key(s) are not LoRA A/B weights (e.g. {unknown[:3]}); "
            "loragen supports plain LoRA on linear layers only."
        )
    if not lora_A:
        raise AdapterFormatError(f"{path / WEIGHTS_NAME}: holds no LoRA weights.")
    return lora_A, lora_B


def _target_list(target: Any) -> list[str]:
    if target is None:
        return []
    if isinstance(target, str):  # a regex in PEFT; the module paths tell the real targets
        return []
    return sorted(str(t) for t in target)
