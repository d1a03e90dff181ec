"""`loragen trust refit`: refit trust models on the calibration cases they already hold, with this loragen's trust
model, without generating anything or opening a bank.

A trust file (`trust.json` next to a checkpoint) keeps its cases (features, measured accuracy, task) and fits its
model when loaded, so a new trust model applies to it as is; what goes stale is the cross-validated report it
carries (`meta.cross_validated`), which `refit` recomputes in place. A `loragen trust fit` report (its `--json`)
keeps every method's cases, so its methods are re-scored too (retrieval's trust file lives next to a bank and may
not be at hand). The old and new metrics are reported side by side; `--manifest` rewrites a release manifest's
trust metrics for the methods refitted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from loragen.bank.errors import CheckpointError
from loragen.meta.trust import KIND, TrustModel
from loragen.meta.trust_report import cross_validated_metrics, metrics_by_condition, trust_diagram


def _read(path: Path, expected: str = "a trust file or a `loragen trust fit` report") -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot read it as JSON ({err}); pass {expected}") from None


def refit_trust_file(path: Path, data: dict, without: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Recompute a trust file's cross-validated metrics (`refit` writes them back); `without`: score as if those
    features had never been measured."""
    try:
        model = TrustModel.from_dict(data)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: a damaged trust file ({err}); refit it with `loragen trust fit`") from None
    for name in without & set(model.features):
        model.rows[:, model.features.index(name)] = float("nan")
    cv, metrics = cross_validated_metrics(model)
    return {"method": str(model.meta.get("method", path.parent.name)), "source": str(path),
            "before": model.meta.get("cross_validated"), "metrics": metrics, "model": model,
            "curve": ([e.expected for e in cv], model.targets.tolist())}


def refit_report(path: Path, data: dict, without: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Re-score every method of a `loragen trust fit` report on its stored cases (`without` those features)."""
    out = []
    for method, entry in data["methods"].items():
        cases = entry.get("cases") or []
        if not cases:
            raise CheckpointError(f"{path}: method {method!r} holds no cases; refit needs the report `loragen trust "
                                  "fit` wrote (its --json)")
        rows = [{k: v for k, v in c["features"].items() if k not in without} for c in cases]
        model = TrustModel.fit(rows, [c["measured"] for c in cases],
                               [c["task"] for c in cases], target=data.get("target", "accuracy"))
        cv, metrics = cross_validated_metrics(model)
        refitted = [{**c, "predicted": e.expected, "low": e.low, "high": e.high, "used": list(e.features)}
                    for c, e in zip(cases, cv)]
        out.append({"method": method, "source": str(path), "before": entry.get("metrics"), "metrics": metrics,
                    "by_condition": metrics_by_condition(refitted), "cases": refitted,
                    "curve": ([e.expected for e in cv], [c["measured"] for c in cases])})
    return out


def refit(paths: Sequence[str | Path], *, write: bool = True, json_path: Path | None = None,
          plot_path: Path | None = None, manifest: Path | None = None,
          without: Sequence[str] = ()) -> dict[str, Any]:
    """Refit the trust files and fit reports in `paths`; return the side-by-side report.

    `without`: features to score as if never measured (e.g. the `_own` ones: a user who gives no `--inputs`);
    a report only, then: no trust file or manifest is written. Nothing is written unless every input reads.

    Raises:
        CheckpointError: a path (or `manifest`) that is not what it should be, or a damaged one (what to pass
            instead is in the message).
    """
    entries: list[dict[str, Any]] = []
    dropped = frozenset(without)
    if dropped and manifest is not None:
        raise CheckpointError("--without scores a what-if: it writes no manifest; leave out --manifest")
    # Every input is read and checked before anything is written.
    manifest_data = None if manifest is None else _read(manifest, "the manifest.json of a release (`loragen "
                                                                  "release build`)")
    for p in map(Path, paths):
        data = _read(p)
        if data.get("kind") == KIND:
            entries.append(refit_trust_file(p, data, dropped))
        elif isinstance(data.get("methods"), dict):
            entries.extend(refit_report(p, data, dropped))
        else:
            raise CheckpointError(f"{p}: neither a trust file (kind {KIND!r}) nor a `loragen trust fit` report "
                                  "(with \"methods\"); pass CHECKPOINT/trust.json or the --json of `trust fit`")
    if write and not dropped:
        for e in entries:
            if "model" in e:
                e["model"].meta["cross_validated"] = e["metrics"]
                e["model"].save(e["source"])
    report: dict[str, Any] = {"command": "loragen " + " ".join(sys.argv[1:]) if sys.argv else "",
                              "refitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "without": sorted(dropped),
                              "entries": [{k: v for k, v in e.items() if k not in ("curve", "model")}
                                          for e in entries]}
    curves: dict[str, tuple] = {}
    for e in entries:
        curves.setdefault(e["method"], e["curve"])
    if plot_path is not None:
        png = trust_diagram(curves, plot_path, title="Trust after refit: predicted vs measured (cross-validated)")
        report["plot"] = str(png) if png else None
    if manifest is not None:
        _update_manifest(manifest, manifest_data, entries, report)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def _update_manifest(path: Path, data: dict, entries: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """A release manifest's trust metrics for the methods refitted (the first entry per method wins)."""
    trust = data.setdefault("trust", {})
    metrics = trust.setdefault("metrics", {})
    done: set[str] = set()
    for e in entries:
        if e["method"] not in done:
            metrics[e["method"]] = e["metrics"]
            done.add(e["method"])
    trust["refit"] = {"command": report["command"], "at": report["refitted_at"], "methods": sorted(done)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")  # as `release build` writes it
    tmp.replace(path)
