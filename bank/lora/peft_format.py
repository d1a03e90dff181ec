"""Read and write PEFT's on-disk LoRA format exactly: `adapter_config.json` + `adapter_model.safetensors`.

Keys follow PEFT: ``base_model.model.<module path>.lora_A.weight`` / ``...lora_B.weight``. Weights are only
ever read from safetensors; a pickled ``adapter_model.bin`` is refused, never unpickled. loragen's own
metadata travels in the safetensors header (key ``loragen``), so PEFT sees a plain LoRA config.

`load_peft` treats the directory as untrusted (uploads go through it): the config's values are type- and
range-checked (``r``, a finite ``lora_alpha`` in (0, MAX_LORA_ALPHA]), its ``target_modules`` must name exactly
the modules the weights are for, the weights must be floating point, and the header metadata must be a small,
shallow JSON object. Every problem is an `AdapterFormatError` (or `AdapterShapeError`) naming the file.
"""

from __future__ import annotations

import json
import math
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

MAX_LORA_ALPHA = 1e6  # real adapters use alpha of order r (1-512); far larger values only overflow ΔW
MAX_CONFIG_BYTES = 1 << 20  # adapter_config.json
MAX_METADATA_CHARS = 1 << 20  # the `loragen` header entry
MAX_JSON_DEPTH = 32  # nesting of config and header metadata (deeper JSON only exhausts the stack)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

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
    targets = config.get("target_modules")
    if isinstance(targets, list):
        _check_targets(targets, set(lora_A) | set(lora_B), path / CONFIG_NAME)
    metadata = _header_metadata(header_meta, path / WEIGHTS_NAME)
    if config.get("task_type") is not None:
        peft_meta = metadata.get("peft")
        metadata["peft"] = {**(peft_meta if isinstance(peft_meta, dict) else {}), "task_type": config["task_type"]}
    try:
        adapter = LoraAdapter(
            base_model=config.get("base_model_name_or_path") or "",
            r=config["r"],
            lora_alpha=float(config.get("lora_alpha", config["r"])),
            lora_A={m: t.to(device) for m, t in lora_A.items()},
            lora_B={m: t.to(device) for m, t in lora_B.items()},
            target_modules=_target_list(targets),
            fan_in_fan_out=bool(config.get("fan_in_fan_out") or False),
            use_rslora=bool(config.get("use_rslora") or False),
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
        **_layer_scope(adapter.modules),
        "revision": None,
    }


def _layer_scope(modules) -> dict[str, Any]:
    """PEFT's layers_to_transform / layers_pattern for the blocks the adapter covers (e.g. SmolLM2 blocks 20-29:
    PEFT then adds LoRA to those blocks only, instead of zero-effect factors and a missing-keys warning elsewhere);
    both None when a module path has no block index or the blocks sit in differently named containers."""
    scopes = set()
    for path in modules:
        parts = str(path).split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is None or index == 0:
            return {"layers_to_transform": None, "layers_pattern": None}
        scopes.add((parts[index - 1], int(parts[index])))
    containers = {c for c, _ in scopes}
    if len(containers) != 1:
        return {"layers_to_transform": None, "layers_pattern": None}
    return {"layers_to_transform": sorted({i for _, i in scopes}), "layers_pattern": containers.pop()}


def _read_config(path: Path) -> dict[str, Any]:
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise AdapterFormatError(f"{path}: missing {CONFIG_NAME}; is this a PEFT adapter directory?")
    if config_file.stat().st_size > MAX_CONFIG_BYTES:
        raise AdapterFormatError(f"{config_file}: {config_file.stat().st_size} bytes; a LoRA config is a few "
                                 f"hundred bytes and at most {MAX_CONFIG_BYTES} are read.")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else err
        raise AdapterFormatError(f"{config_file}: not valid JSON ({reason}).") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{config_file}: expected a JSON object, got {type(config).__name__}.")
    problems = _json_problems(config) + _lora_problems(config)
    for key, allowed in _UNSUPPORTED.items():
        if config.get(key, allowed[0]) not in allowed:
            problems.append(f"{key}={config[key]!r} is not supported by loragen")
    if problems:
        raise AdapterFormatError(f"{config_file}: " + "; ".join(problems) + ".")
    return config


def _lora_problems(config: dict[str, Any]) -> list[str]:
    """Type and range problems of the LoRA fields loragen reads (the JSON itself is already well-formed)."""
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}; only LORA adapters are supported")
    r = config.get("r")
    if "r" not in config:
        problems.append("no rank 'r'")
    elif not _is_int(r) or r < 1:
        problems.append(f"r must be a positive integer, got {r!r}")
    alpha = config.get("lora_alpha", r if _is_int(r) else 1)
    # With r >= 1 this range also keeps the scaling alpha / r (or alpha / sqrt(r)) finite and positive.
    if not _is_number(alpha) or not math.isfinite(alpha) or not 0 < alpha <= MAX_LORA_ALPHA:
        problems.append(f"lora_alpha must be a finite number in (0, {MAX_LORA_ALPHA:g}], got {alpha!r} "
                        "(ΔW is scaled by lora_alpha / r)")
    for key in ("fan_in_fan_out", "use_rslora"):
        if config.get(key) is not None and not isinstance(config[key], bool):
            problems.append(f"{key} must be true or false, got {config[key]!r}")
    for key in ("base_model_name_or_path", "task_type"):
        if config.get(key) is not None and not isinstance(config[key], str):
            problems.append(f"{key} must be a string, got {type(config[key]).__name__}")
    targets = config.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and targets and all(isinstance(t, str) and t for t in targets)):
        problems.append(f"target_modules must be a non-empty list of module names, got {targets!r:.200}")
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_problems(value: Any) -> list[str]:
    """Problems of parsed, untrusted JSON: nesting deeper than MAX_JSON_DEPTH, strings that are not valid
    Unicode (lone surrogates such as "\\ud800", which no UTF-8 response can carry). Walked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return [f"JSON nested deeper than {MAX_JSON_DEPTH} levels"]
        if isinstance(item, dict):
            stack.extend((x, depth + 1) for pair in item.items() for x in pair)
        elif isinstance(item, list):
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, str) and not _is_unicode(item):
            return [f"the string {item!r:.80} is not valid Unicode (a lone surrogate escape)"]
    return []


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _header_metadata(header: dict[str, str], weights: Path) -> dict[str, Any]:
    """loragen's metadata from the safetensors header: a small, shallow JSON object (or {} when absent)."""
    raw = header.get("loragen")
    if raw is None:
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise AdapterFormatError(f"{weights}: the 'loragen' header metadata has {len(raw)} characters; at most "
                                 f"{MAX_METADATA_CHARS} are accepted.")
    try:
        metadata = json.loads(raw)
    except RecursionError:
        problems = [f"JSON nested deeper than {MAX_JSON_DEPTH} levels"]
    except ValueError as err:  # JSONDecodeError
        problems = [f"it is not valid JSON ({err})"]
    else:
        problems = _json_problems(metadata) if isinstance(metadata, dict) else [
            f"it is a JSON {type(metadata).__name__}, not an object"]
    if problems:
        raise AdapterFormatError(f"{weights}: the 'loragen' header metadata is refused: {problems[0]}; re-save "
                                 "the adapter with save_peft (or drop that header entry).")
    return metadata


def _check_targets(targets: list[str], modules: set[str], config_file: Path) -> None:
    """PEFT applies a LoRA weight to the modules whose path is a target or ends in ``.<target>``: every target
    must have weights and every weight must belong to a target, or `PeftModel.from_pretrained` fails later."""
    def hit(module: str, target: str) -> bool:
        return module == target or module.endswith("." + target)

    unused = sorted({t for t in targets if not any(hit(m, t) for m in modules)})
    stray = sorted(m for m in modules if not any(hit(m, t) for t in targets))
    if unused or stray:
        names = sorted({m.rsplit(".", 1)[-1] for m in modules})
        found = [f"target_modules {unused} have no weights" if unused else "",
                 f"weights for {stray[:3]}{' ...' if len(stray) > 3 else ''} match no target_modules entry"
                 if stray else ""]
        raise AdapterFormatError(f"{config_file}: target_modules do not match the weights: "
                                 f"{'; '.join(x for x in found if x)}. The weights are for modules named "
                                 f"{names[:20]}; list exactly those in target_modules.")


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
    wrong = sorted(f"{k} ({str(t.dtype).removeprefix('torch.')})" for k, t in tensors.items()
                   if t.dtype not in FLOAT_DTYPES)
    if wrong:
        raise AdapterFormatError(f"{weights}: LoRA weights must be float16, bfloat16, float32 or float64; "
                                 f"{len(wrong)} tensor(s) are not, e.g. {wrong[:3]}.")
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
    if isinstance(target, str):
        # A regex (or "all-linear") in PEFT. It is not evaluated: an untrusted pattern can take exponential time.
        # The module paths tell the real targets, and save_peft writes those as a list.
        return []
    return sorted(str(t) for t in target)
