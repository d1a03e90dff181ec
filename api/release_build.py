"""`loragen release build`: the reproducible build of the generators that ship inside the package.

Stages, each skipped when its output exists in the work folder (so an interrupted build resumes):

1. bank      the built-in suite's bank (`<work>/bank.duckdb`): oracles imported from `oracle_cache` (only the tasks
             found there, like `loragen bank build --import-dir DIR --import-only`), else trained; built tasks are
             never rebuilt;
2. hypernet  the default CVAE (`hypernet/configs/suite.yaml`, seed 0) -> `<work>/full/hypernet`;
3. meta      the default ABMLL (`meta/configs/abmll_suite.yaml`, seed 0) -> `<work>/full/meta`;
4. eval-full the harness (`bank.evaluate`, as `loragen eval`) on the full-precision pair -> `<work>/eval_full.json`;
5. compact   both compacted (`api.release.compact`) -> `<work>/compact/{hypernet,meta}`;
6. eval-compact  the harness on the compact pair -> `<work>/eval_compact.json`;
6b. trust    `loragen trust fit` on the compact pair (held-out tasks and wordings) -> their trust.json, and the
             cross-validated report -> `<work>/trust.json` (skipped, and said so, with fewer than 4 held-out tasks);
7. ship      the compact checkpoints and `manifest.json` (command, package versions, data hash of the bank's task
             set, evaluation per split for both precisions side by side, sizes, seconds per stage) ->
             `<out>/<base model>/`.

Each stage's seconds are added to `<work>/seconds.json` as it ends, so a build resumed after an interruption still
reports the time of the whole build.

`BuildOptions.tiny()` is the same pipeline on a handful of tasks with a few steps each (the end-to-end test).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loragen.bank import paths

log = logging.getLogger(__name__)
METHODS = {"cvae": "hypernet", "abmll": "meta"}  # method -> checkpoint folder
_PACKAGES = ("loragen", "torch", "pytorch-lightning", "transformers", "sentence-transformers", "pyro-ppl", "peft",
             "safetensors", "faiss-cpu", "duckdb")


@dataclass
class BuildOptions:
    """What `build` does. Defaults are the real release (the whole MiniLM suite, the shipped configs).

    Attributes:
        work: the work folder (bank, full-precision checkpoints, evaluations); default `<home>/release`.
        out: where the shipped folders go; default `bank.paths.shipped_root()` (the package data folder).
        oracle_cache: prebuilt oracles to import (only the tasks found there are built).
        max_tasks: at most this many in-bank tasks (and half as many held-out ones, at least one); None: all.
        oracle_steps: most training steps per oracle trained here (None: the recipe's).
        hypernet_steps: CVAE optimiser steps. meta_steps / meta_warm_start_steps: ABMLL SVI / warm-start steps
            (None: the config's).
        max_examples / eval_max_tasks / conditions / baselines: the harness's settings. trust_max_tasks: tasks per
            split of the trust fit (default: eval_max_tasks; each case runs all three methods, ~40 s here).
        max_mb / energy / rank: compaction of the CVAE (`api.release.compact`): size budget, readout energy, rank.
        progress: progress bars.
    """

    work: Path | None = None
    out: Path | None = None
    oracle_cache: Path | None = None
    max_tasks: int | None = None
    oracle_steps: int | None = None
    hypernet_steps: int = 2000
    meta_steps: int | None = None
    meta_warm_start_steps: int | None = None
    max_examples: int = 64
    eval_max_tasks: int | None = 12  # per split: the 4-split table of both precisions in ~10 min on 2 cores
    trust_max_tasks: int | None = None  # per trust split (None: eval_max_tasks); ~40 s per case on 2 cores
    conditions: tuple[str, ...] = ("description", "labels", "examples")
    baselines: tuple[str, ...] = ("base", "oracle", "mean", "retrieval")
    max_mb: float = 25.0  # the suite CVAE is 80 MB in fp16; at 25 MB its readout is stored as 8/4-bit codes
    energy: float | None = None
    rank: int | None = None
    progress: bool = True
    command: str = field(default_factory=lambda: " ".join(["loragen", *sys.argv[1:]]))

    @classmethod
    def tiny(cls, **overrides: Any) -> BuildOptions:
        """A seconds-long end-to-end build: 3 in-bank tasks, few steps, 8 test examples, one condition."""
        values = dict(max_tasks=3, oracle_steps=4, hypernet_steps=10, meta_steps=3, meta_warm_start_steps=3,
                      max_examples=8, eval_max_tasks=1, conditions=("description",), baselines=("base", "oracle"))
        return cls(**{**values, **overrides})


def build(options: BuildOptions) -> dict[str, Any]:
    """Run every stage not yet done and return the manifest written next to the shipped checkpoints."""
    from loragen.bank.base_model import DEFAULT_BASE_MODEL

    work = Path(options.work or paths.home() / "release").expanduser()
    out = Path(options.out or paths.shipped_root()).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    timings = work / "seconds.json"  # per stage, kept across resumed runs: the manifest reports the whole build
    seconds: dict[str, float] = json.loads(timings.read_text()) if timings.is_file() else {}

    def stage(name: str, done: bool, run) -> None:
        if done:
            print(f"==> {name}: done already (in {work}), skipped", flush=True)
            return
        print(f"==> {name}", flush=True)
        t0 = time.perf_counter()
        run()
        seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 1)
        timings.write_text(json.dumps(seconds, indent=2) + "\n")

    bank_path, full, small = work / "bank.duckdb", work / "full", work / "compact"
    stage("bank", False, lambda: _build_bank(bank_path, options))
    stage("hypernet", _is_checkpoint(full / "hypernet"), lambda: _train_hypernet(bank_path, full / "hypernet", options))
    stage("meta", _is_checkpoint(full / "meta"), lambda: _train_meta(bank_path, full / "meta", options))
    stage("eval-full", (work / "eval_full.json").is_file(),
          lambda: _evaluate(bank_path, full, work / "eval_full.json", options))
    compacted: dict[str, dict] = {}
    for method, folder in METHODS.items():
        report = work / f"compact_{folder}.json"
        stage(f"compact {method}", report.is_file(),
              lambda f=folder, r=report: _compact(full / f, small / f, r, options))
        compacted[method] = json.loads(report.read_text())
    stage("eval-compact", (work / "eval_compact.json").is_file(),
          lambda: _evaluate(bank_path, small, work / "eval_compact.json", options))
    stage("trust", (work / "trust.json").is_file(), lambda: _fit_trust(bank_path, small, work, options))
    evals = {k: json.loads((work / f"eval_{k}.json").read_text())["summary"] for k in ("full", "compact")}
    target = out / DEFAULT_BASE_MODEL.replace("/", "__")
    for folder in METHODS.values():
        if (target / folder).exists():
            shutil.rmtree(target / folder)
        shutil.copytree(small / folder, target / folder)
    trust = json.loads((work / "trust.json").read_text())
    manifest = _manifest(DEFAULT_BASE_MODEL, bank_path, compacted, evals, trust, options, seconds)
    tmp = target / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(target / "manifest.json")
    print(f"==> shipped {sorted(METHODS.values())} + manifest.json to {target}", flush=True)
    return manifest


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _suite_tasks(options: BuildOptions) -> list:
    """The suite's tasks to build: all, or `max_tasks` in-bank ones plus about half as many held-out ones."""
    from loragen.bank.tasks import BUILTIN, OracleCache, get_provider

    tasks = get_provider(BUILTIN, seed=0).tasks()
    if options.oracle_cache is not None:
        cache = OracleCache(options.oracle_cache)
        tasks = [t for t in tasks if cache.has_final(t.name)]
    if options.max_tasks is None:
        return tasks
    train = [t for t in tasks if t.split == "train"][: options.max_tasks]
    heldout = [t for t in tasks if t.split == "heldout"][: max(1, options.max_tasks // 2)]
    return train + heldout


def _build_bank(path: Path, options: BuildOptions) -> None:
    from loragen.bank.store import Bank
    from loragen.bank.train import TrainConfig, build_bank, imported_oracles, trained_oracles

    steps = options.oracle_steps
    config = TrainConfig() if steps is None else TrainConfig(
        steps=steps, min_steps=min(TrainConfig.min_steps, steps), num_checkpoints=min(TrainConfig.num_checkpoints,
                                                                                        max(0, steps - 1)))
    oracle = trained_oracles(config)
    if options.oracle_cache is not None:
        oracle = imported_oracles(options.oracle_cache, fallback=oracle)
    with Bank.open(path) as bank:
        summary = build_bank(bank, _suite_tasks(options), oracle=oracle, progress=options.progress)
        if summary.built:
            bank.reindex()
    print(f"    bank {path}: {json.dumps(summary.as_dict())}", flush=True)


def _config_file(package: str, name: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).parent / "configs" / name


def _train_hypernet(bank_path: Path, out: Path, options: BuildOptions) -> None:
    from loragen.bank.store import Bank
    from loragen.bank.tasks import BankSource
    from loragen.hypernet.config import HypernetConfig
    from loragen.hypernet.train import snapshot, train_hypernet

    data = HypernetConfig.from_file(_config_file("loragen.hypernet", "suite.yaml")).to_dict()
    data.setdefault("train", {})["seed"] = 0
    config = HypernetConfig.from_dict(data)
    with Bank.open(bank_path) as bank:
        source = snapshot(BankSource(bank), config)
    train_hypernet(source, config, out, {"max_steps": options.hypernet_steps, "accelerator": "cpu", "devices": 1,
                                         "enable_progress_bar": options.progress, "log_every_n_steps": 10})


def _train_meta(bank_path: Path, out: Path, options: BuildOptions) -> None:
    from loragen.bank.store import Bank
    from loragen.bank.tasks import BankSource
    from loragen.meta.config import MetaConfig
    from loragen.meta.train import train_abmll

    data = MetaConfig.from_file(_config_file("loragen.meta", "abmll_suite.yaml")).to_dict()
    train = data.setdefault("train", {})
    train["seed"] = 0
    for key, value in (("steps", options.meta_steps), ("warm_start_steps", options.meta_warm_start_steps)):
        if value is not None:
            train[key] = value
    with Bank.open(bank_path) as bank:
        train_abmll(BankSource(bank), MetaConfig.from_dict(data), out, progress=options.progress)


def _evaluate(bank_path: Path, checkpoints: Path, report: Path, options: BuildOptions) -> None:
    from loragen.api.release import load_generator
    from loragen.bank.evaluate import ALL_SPLITS, evaluate
    from loragen.bank.store import Bank
    from loragen.bank.tasks import BUILTIN, get_provider

    classifier = get_provider(BUILTIN).classifier()
    methods = {m: load_generator(m, checkpoints / folder, classifier=classifier) for m, folder in METHODS.items()}
    with Bank.open(bank_path) as bank:
        result = evaluate(bank, methods, splits=ALL_SPLITS, baselines=options.baselines,
                          max_examples=options.max_examples, max_tasks=options.eval_max_tasks, classifier=classifier,
                          progress=options.progress, conditions=options.conditions, controls=())
    print(result.table(), flush=True)
    result.save_json(report)


TRUST_SPLITS = ("heldout_task", "heldout_wording")  # never trained on, by the generators or the calibrator


def _fit_trust(bank_path: Path, checkpoints: Path, work: Path, options: BuildOptions) -> None:
    """`loragen trust fit` on the compact pair (with retrieval, for the methods' disagreement): writes each one's
    trust.json, so the shipped generators print a calibrated trust score; the cross-validated report goes to
    `<work>/trust.json` (+ png). A bank with too few held-out tasks for a trust model is recorded as such."""
    from loragen.api.trust_fit import fit_bank
    from loragen.meta.trust import TooFewTasksError

    specs = [f"{m}={checkpoints / folder}" for m, folder in METHODS.items()] + ["retrieve"]
    try:
        report = fit_bank(bank_path, specs, splits=TRUST_SPLITS, conditions=options.conditions,
                          max_tasks=options.trust_max_tasks or options.eval_max_tasks,
                          max_examples=options.max_examples,
                          json_path=work / "trust_cases.json", plot_path=work / "trust.png",
                          progress=options.progress)
    except TooFewTasksError as err:
        print(f"    trust: not fitted ({err}); the shipped generators will say \"not calibrated\"", flush=True)
        summary = {"fitted": False, "reason": str(err)}
    else:
        summary = {"fitted": True, "splits": list(TRUST_SPLITS), "n_cases": report["n_cases"],
                   "metrics": {m: entry["metrics"] for m, entry in report["methods"].items()}}
        for method, metrics in summary["metrics"].items():
            print(f"    trust {method}: mean |predicted - measured| {metrics['mean_abs_error']:.3f}, Spearman "
                  f"{metrics['spearman']}, chance-level above 0.8: {metrics['chance_above_0.8']} (cross-validated)",
                  flush=True)
    (work / "trust.json").write_text(json.dumps(summary, indent=2) + "\n")


def _compact(src: Path, dst: Path, report: Path, options: BuildOptions) -> None:
    from loragen.api.release import compact

    result = compact(src, dst, max_rank=options.rank, energy=options.energy, max_mb=options.max_mb)
    print(f"    {src.name}: {result['bytes_before'] / 1e6:.1f} MB -> {result['bytes_after'] / 1e6:.1f} MB, max "
          f"relative ΔW difference {result['max_relative_difference']:.2e}", flush=True)
    report.write_text(json.dumps(result, indent=2) + "\n")


def data_hash(bank_path: Path) -> str:
    """sha256 over the bank's task set: each built task's name, split and final adapter hash, sorted."""
    from loragen.bank.store import Bank

    with Bank.open(bank_path) as bank:
        finals = {r.task: r.sha256 for r in bank.adapters() if r.kind == "final"}
        rows = sorted(f"{t.name}\t{t.split}\t{finals[t.name]}" for t in bank.tasks() if t.name in finals)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _gains(summary: dict, method: str) -> dict[str, float | None]:
    return {split: (rows.get(method) or {}).get("normalised_gain") for split, rows in summary.items()}


def _manifest(base_model: str, bank_path: Path, compacted: dict[str, dict], evals: dict[str, dict],
              trust: dict[str, Any], options: BuildOptions, seconds: dict[str, float]) -> dict[str, Any]:
    from datetime import datetime, timezone

    rows = sorted({m for summary in evals.values() for split in summary.values() for m in split})
    side = {m: {split: {"full": _gains(evals["full"], m)[split], "compact": _gains(evals["compact"], m)[split]}
                for split in evals["compact"]} for m in rows}
    for per_split in side.values():
        for cell in per_split.values():
            full, small = cell["full"], cell["compact"]
            cell["difference"] = None if full is None or small is None else small - full
    methods = {m: {"folder": METHODS[m], "bytes": compacted[m]["bytes_after"],
                   "full_precision_bytes": compacted[m]["bytes_before"],
                   "max_relative_difference": compacted[m]["max_relative_difference"],
                   **{k: compacted[m][k] for k in ("readout_rank", "coded_rows") if k in compacted[m]}}
               for m in METHODS}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
                if k not in ("command", "work", "out", "progress")}
    with_bank = {"tasks": _task_counts(bank_path), "data_sha256": data_hash(bank_path)}
    return {"base_model": base_model, "command": options.command, "options": settings,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "loragen_version": _versions()["loragen"], "versions": _versions(), "bank": with_bank,
            "methods": methods, "evaluation": {m: _gains(evals["compact"], m) for m in METHODS},
            "evaluation_side_by_side": side, "harness": evals,
            "trust": trust, "seconds": {**seconds, "total": round(sum(seconds.values()), 1)}}


def _task_counts(bank_path: Path) -> dict[str, int]:
    from loragen.bank.store import Bank

    with Bank.open(bank_path) as bank:
        splits = [t.split for t in bank.tasks()]
    return {s: splits.count(s) for s in sorted(set(splits))}
