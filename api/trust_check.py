"""Score stored trust models on evaluation cases: issue 16's calibration split, reported by `loragen eval --trust`.

For every method (a generator row of `loragen eval`, and its retrieval baseline) the trust file `loragen trust fit`
stored (`CHECKPOINT/trust.json`, `<bank>.trust-retrieve.json`; `api.trust.trust_path`) is loaded, never refitted on
the evaluation. Each case's adapter is regenerated, its accuracy measured (exact match for generation tasks) and its
label-free features computed exactly as `loragen trust fit` does (`api.trust_fit.collect`); the stored model then
predicts the accuracy with its interval, and `meta.trust_report` compares predicted with measured.

Honesty: a case whose task is one of the trust model's own calibration tasks (`TrustModel.groups`) would be
predicted in-sample, so it is predicted by the model refitted without that task's rows (`TrustModel.without_tasks`,
leave-task-out). Each method reports how many cases were scored so (`n_in_calibration`) and how many come from tasks
the calibrator never saw (`n_unseen`). A method without a usable trust file is reported "not calibrated", with the
command that fits one, and never given a made-up number.

Usage::

    with Bank.open(path) as bank:
        section = check_trust(bank, {"cvae": generator}, {"cvae": Path("runs/hypernet")}, cases, classifier)
    print(trust_table(section))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loragen.api.trust import load_trust, not_calibrated, trust_path
from loragen.api.trust_fit import EvalCase, collect, default_test_examples, reference_embeddings
from loragen.meta.trust import TrustModel
from loragen.meta.trust_report import metrics_by_condition, trust_diagram, trust_metrics

RETRIEVAL = "retrieval"  # `loragen eval`'s row of the retrieve method
TITLE = "Trust on the evaluation: predicted vs measured accuracy (calibration tasks left out)"


def trust_method(row: str) -> str:
    """The method whose trust file an evaluation row reads: `abmll@b` -> abmll, the retrieval baseline -> retrieve."""
    name = row.partition("@")[0]
    return "retrieve" if name == RETRIEVAL else name


def diagram_path(plot: Path) -> Path:
    """Where the trust diagram goes next to an evaluation chart: `eval.png` -> `eval_trust.png`."""
    return plot.with_name(f"{plot.stem}_trust.png")


def honest_estimates(model: TrustModel, records: Sequence[dict]) -> list[dict]:
    """Each record (`api.trust_fit.collect`'s: task, features, measured, ...) with the model's predicted, low, high,
    the features used and in_calibration; a case of one of the model's calibration tasks is predicted by the model
    refitted without that task's rows.

    Raises:
        ValueError: every calibration row of the model belongs to a case's task (a trust file no fit writes).
    """
    calibration, without = set(model.groups), {}
    out = []
    for r in records:
        inside = r["task"] in calibration
        if inside and r["task"] not in without:
            without[r["task"]] = model.without_tasks({r["task"]})
        est = (without[r["task"]] if inside else model).predict(r["features"])
        out.append({**r, "predicted": est.expected, "low": est.low, "high": est.high, "used": list(est.features),
                    "in_calibration": inside})
    return out


def _unusable(method: str, model: TrustModel | None, path: Path | None, checkpoint: Path | None, base_model: str,
              target: str) -> str | None:
    """Why `model` cannot score this evaluation (with the command that fits one), or None when it can."""
    why = None
    if model is None:
        why = ("no checkpoint or bank to find a trust file by" if path is None
               else f"its trust file {path} is unreadable (see the log)" if path.is_file()
               else f"no trust file at {path}")
    elif model.meta.get("base_model") not in (None, base_model):
        why = f"its trust file is for base model {model.meta['base_model']}, not {base_model}"
    elif model.target != target:
        why = f"its trust file predicts {model.target}, this evaluation measures {target}"
    return None if why is None else not_calibrated(method, why, checkpoint).advice


def trust_entry(model: TrustModel, path: Path, records: list[dict]) -> dict:
    """A calibrated method's report: metrics of its honest estimates overall, per condition and per split."""
    recs = honest_estimates(model, records)
    metrics = None
    if recs:
        metrics = trust_metrics([r["predicted"] for r in recs], [r["measured"] for r in recs],
                                [r["features"].get("chance") or 0.0 for r in recs], [r["low"] for r in recs],
                                [r["high"] for r in recs])
    inside = sum(r["in_calibration"] for r in recs)
    return {"calibrated": True, "trust_file": str(path), "target": model.target,
            "calibration": {"splits": model.meta.get("splits"), "tasks": len(set(model.groups)),
                            "cases": len(model.groups)},
            "n_in_calibration": inside, "n_unseen": len(recs) - inside, "metrics": metrics,
            "by_condition": metrics_by_condition(recs),
            "by_split": metrics_by_condition([{**r, "condition": r["split"]} for r in recs]), "cases": recs}


def check_trust(bank: Any, generators: Mapping[str, Any], checkpoints: Mapping[str, Path | None],
                cases: Sequence[EvalCase], scorer: Any, *, max_examples: int | None = None, seed: int = 0,
                plot_path: Path | None = None, progress: bool = True, defaults: bool = False) -> dict:
    """Score each method's stored trust model on `cases`.

    Args:
        generators: evaluation row -> generator (`cvae`, `abmll@b`, `retrieval`); every one is also a peer of the
            others, as in `loragen trust fit`. checkpoints: row -> its checkpoint directory (where its trust file is).
        cases: the evaluation cases (`api.trust_fit.eval_cases`). scorer: the tasks' classifier, or the `CausalLM`
            of generation tasks (exact match).
        plot_path: the predicted-vs-measured PNG (None: not drawn).
        defaults: score what `loragen generate "..."` with only the defaults prints (features without a bank,
            inputs or samples: `api.trust_fit.collect`); retrieval, which needs a bank, is then not scored.

    Returns:
        {"target", "splits", "n_cases", "max_examples", "methods": row -> entry, "plot"}; an entry is
        {"calibrated": False, "trust_file", "reason"} or {"calibrated": True, "metrics", "by_condition", "by_split",
        "n_in_calibration", "n_unseen", "cases", ...}.

    Raises:
        TaskDataError: a case's task has no test data loragen can rebuild.
    """
    target = "accuracy" if not cases or cases[0].task.labels else "exact_match"
    max_examples = max_examples or default_test_examples(cases)
    section: dict[str, Any] = {"target": target, "defaults": defaults, "splits": sorted({c.split for c in cases}),
                               "n_cases": len(cases),
                               "max_examples": max_examples, "methods": {}, "plot": None}
    models = {}
    for row in generators:
        method, checkpoint = trust_method(row), checkpoints.get(row)
        path = trust_path(method, checkpoint, bank.path)
        model = load_trust(path)
        reason = _unusable(method, model, path, checkpoint, scorer.base_model_id, target)
        if reason is None:
            models[row] = (model, path)
        else:
            section["methods"][row] = {"calibrated": False, "trust_file": None if path is None else str(path),
                                       "reason": reason}
    if not models or not cases:
        return section
    records = collect(bank, generators, cases, scorer, max_examples=max_examples, seed=seed,
                      reference=reference_embeddings(bank), progress=progress, defaults=defaults)
    for row, (model, path) in models.items():
        section["methods"][row] = trust_entry(model, path, records[row])
    curves = {row: ([r["predicted"] for r in e["cases"]], [r["measured"] for r in e["cases"]])
              for row, e in section["methods"].items() if e["calibrated"]}
    if plot_path is not None:
        png = trust_diagram(curves, plot_path, title=TITLE)
        section["plot"] = None if png is None else str(png)
    section["methods"] = {row: section["methods"][row] for row in generators}  # the evaluation's order
    return section


def trust_table(section: Mapping[str, Any]) -> str:
    """The printed table: method, cases (left-task-out / unseen), MAE, Spearman, AUROC(acc < 0.7), chance-level
    cases predicted above 0.8, interval coverage; a method without a trust file says so."""
    head = f"{'trust':<16} {'n (calib/unseen)':>16} {'MAE':>6} {'Spearman':>8} {'AUROC<0.7':>9} " \
           f"{'chance>0.8':>10} {'coverage':>8}"
    lines = [head, "-" * len(head)]
    for row, e in section["methods"].items():
        if not e["calibrated"]:
            lines.append(f"{row:<16} {e['reason']}")
            continue
        m = e["metrics"]
        if m is None:
            lines.append(f"{row:<16} no case scored (the method generated no adapter)")
            continue
        cell = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731
        n = f"{m['n']} ({e['n_in_calibration']}/{e['n_unseen']})"
        lines.append(f"{row:<16} {n:>16} {m['mean_abs_error']:>6.3f} {cell(m['spearman'], '.2f'):>8} "
                     f"{cell(m['auroc_below_0.7'], '.2f'):>9} {m['chance_above_0.8']:>4}/{m['chance_level']:<5} "
                     f"{cell(m.get('interval_coverage'), '.2f'):>8}")
    return "\n".join(lines)


def check_evaluation(bank: Any, report: Any, generators: Mapping[str, Any], checkpoints: Mapping[str, Path | None],
                     scorer: Any, *, conditions: Sequence[str], retrieval: bool, max_examples: int = 64,
                     seed: int = 0, plot_path: Path | None = None, progress: bool = True) -> dict:
    """`check_trust` on the cases of a finished `loragen eval` (`report`, a `bank.evaluate.EvalReport`): its splits'
    tasks (the same sample), asked with their evaluation wordings under `conditions`.

    Args:
        generators / checkpoints: the evaluation's `--method` rows (`api.generators.build_methods`).
        retrieval: also check the retrieval baseline (built as the service's retrieve method).

    Raises:
        TaskDataError: a case's task has no test data. CheckpointError: the retrieve method cannot be built.
    """
    from loragen.api.generators import build_methods
    from loragen.api.trust_fit import causal_of, eval_cases

    evaluated = {(r["split"], r["task"]) for r in report.rows}
    splits = list(report.config.get("tasks_per_split") or dict.fromkeys(s for s, _ in evaluated))
    kind = report.config.get("kind", "classification")
    cases = [c for c in eval_cases(bank, splits, conditions, kind=kind) if (c.split, c.task.name) in evaluated]
    rows, ckpts = dict(generators), dict(checkpoints)
    if retrieval:
        built, _ = build_methods(["retrieve"], bank, scorer if kind == "classification" else None,
                                 causal=causal_of(scorer))
        rows[RETRIEVAL], ckpts[RETRIEVAL] = built["retrieve"], None
    return check_trust(bank, rows, ckpts, cases, scorer, max_examples=max_examples, seed=seed, plot_path=plot_path,
                       progress=progress)
