"""What `loragen demo` does the same way for every base model: the timed step lines, the held-out task choice,
the hypernetwork trained once per bank content, the score table (`api.commands.demo` for MiniLM,
`api.commands.demo_llm` for SmolLM2)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()


def start_clock() -> float:
    """Restart the clock the step lines show; returns the start time."""
    global _T0
    _T0 = time.perf_counter()
    return _T0


def step(message: str) -> None:
    """Print one progress line with the seconds since `start_clock`."""
    print(f"==> [{time.perf_counter() - _T0:6.1f} s] {message}", flush=True)


def pick_heldout(specs: list, name: str | None, preferred: Callable[[Any], bool] | None = None):
    """The held-out task to generate for: `name`, else the first held-out task `preferred` accepts (default: a
    two-way language task), else the first held-out task."""
    from loragen.bank.errors import LoragenError

    if name is not None:
        for spec in specs:
            if spec.name == name:
                if spec.split != "heldout":
                    raise LoragenError(f"task {name!r} is an in-bank task; pick a held-out one (split 'heldout').")
                return spec
        raise LoragenError(f"no suite task named {name!r}; held-out tasks: "
                           f"{[s.name for s in specs if s.split == 'heldout'][:5]} ...")
    preferred = preferred or (lambda s: s.family == "lang" and len(s.labels) == 2)
    heldout = [s for s in specs if s.split == "heldout"]
    return next((s for s in heldout if preferred(s)), heldout[0])


def train_generator(bank, home: Path, epochs: int | None, seed: int, config_file: Path | None = None,
                    steps: int | None = None) -> Path:
    """Train the hypernetwork on the bank, or reuse the checkpoint trained on the same bank content and settings.

    Args:
        bank: the demo's open bank.
        home: the demo's folder (the checkpoint goes to `home/hypernet`).
        epochs: training epochs (None: bounded by `steps` only).
        seed: the training seed.
        config_file: a HypernetConfig file (default: the built-in defaults).
        steps: training steps (None: bounded by `epochs` only).
    """
    from loragen.bank.tasks import BankSource
    from loragen.hypernet.config import HypernetConfig
    from loragen.hypernet.train import snapshot, train_hypernet

    out = home / "hypernet"
    data = HypernetConfig.from_file(config_file).to_dict() if config_file is not None else {}
    data.setdefault("train", {})["seed"] = seed
    config = HypernetConfig.from_dict(data)
    key = {"adapters": sorted(r.sha256 for r in bank.adapters() if r.kind in ("final", "checkpoint")),
           "epochs": epochs, "seed": seed}
    if config_file is not None or steps is not None:  # the MiniLM demo's key stays as it was (its markers hold)
        key.update(steps=steps, config=config.to_dict())
    marker = out / "demo-trained-on.json"
    if marker.is_file() and json.loads(marker.read_text()) == key:
        step(f"hypernetwork: reusing {out}")
        return out
    length = " and ".join(f"{n} {unit}" for n, unit in ((epochs, "epochs"), (steps, "steps")) if n is not None)
    step(f"hypernetwork: training {length} on {len(bank.tasks())} tasks")
    source = snapshot(BankSource(bank), config)
    train_hypernet(source, config, out, {"max_epochs": epochs if epochs is not None else -1,
                                         "max_steps": steps if steps is not None else -1,
                                         "accelerator": "cpu", "devices": 1})
    marker.write_text(json.dumps(key))
    return out


def print_scores(rows: dict[str, dict[str, float]]) -> None:
    """A table of one row per adapter and one column per metric (the metrics of the first row)."""
    width = max(len(k) for k in rows)
    columns = list(next(iter(rows.values())))
    print(f"{'adapter':<{width}}  " + "  ".join(columns))
    for name, values in rows.items():
        print(f"{name:<{width}}  " + "  ".join(f"{values[c]:<{len(c)}.3f}" for c in columns).rstrip())
