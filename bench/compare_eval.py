"""Compare two `loragen eval` JSON reports: accuracy and normalised gain per split and row, new minus old.

Accuracies are deterministic for fixed seeds, checkpoints and tasks (unlike timings), so two runs compare row by
row; a row or split in only one report is listed as such. Writes the differences as JSON.

Usage::

    python bench/compare_eval.py OLD.json NEW.json [--common] [--out bench/results/eval_regression.json]

Exit status 0 always (a report, not a gate); rows that lost more than `--tolerance` accuracy are marked. With
--common each row also gets the paired statistics of its per-task differences (standard error, t, tasks that moved
by more than 0.05 either way), so a retrained generator's reshuffling of which tasks it gets right can be told
from a systematic drop: the mark says "REGRESSED" only when the drop is also beyond two paired standard errors,
else "within noise".
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def common_summary(report: dict, keys: set[tuple[str, str, str]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean accuracy per split and row over the (split, task, row) cells in `keys` (tasks both runs scored)."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in report["per_task"]:
        if (r["split"], r["task"], r["method"]) in keys:
            cells.setdefault((r["split"], r["method"]), []).append(r["accuracy"])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (split, row), accs in cells.items():
        out.setdefault(split, {})[row] = {"accuracy": sum(accs) / len(accs), "n_tasks": len(accs)}
    return out


def paired(old: dict, new: dict) -> dict[tuple[str, str], dict[str, float | int]]:
    """Per (split, row) scored by both: the paired statistics of the per-task accuracy differences (new - old)."""
    acc = [{(r["split"], r["method"], r["task"]): r["accuracy"] for r in rep["per_task"]} for rep in (old, new)]
    diffs: dict[tuple[str, str], list[float]] = {}
    for key in sorted(set(acc[0]) & set(acc[1])):
        diffs.setdefault(key[:2], []).append(acc[1][key] - acc[0][key])
    out = {}
    for key, d in diffs.items():
        se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
        out[key] = {"n": len(d), "mean": statistics.fmean(d), "se": se, "t": statistics.fmean(d) / se if se else None,
                    "tasks_worse": sum(x < -0.05 for x in d), "tasks_better": sum(x > 0.05 for x in d)}
    return out


def compare(old: dict, new: dict, tolerance: float, common: bool = False) -> dict:
    """Per split and row: old/new accuracy and normalised gain and their differences (new - old).

    common: compare on the (split, task, row) cells both reports scored (runs on different task samples).
    """
    stats = paired(old, new) if common else {}
    if common:
        keys = ({(r["split"], r["task"], r["method"]) for r in old["per_task"]}
                & {(r["split"], r["task"], r["method"]) for r in new["per_task"]})
        old, new = {"summary": common_summary(old, keys)}, {"summary": common_summary(new, keys)}
    out: dict[str, dict] = {}
    for split in sorted(set(old["summary"]) | set(new["summary"])):
        a, b = old["summary"].get(split, {}), new["summary"].get(split, {})
        rows = {}
        for row in sorted(set(a) | set(b)):
            o, n = a.get(row), b.get(row)
            if o is None or n is None:
                rows[row] = {"only_in": "old" if n is None else "new"}
                continue
            d_acc = n["accuracy"] - o["accuracy"]
            rows[row] = {"old_accuracy": o["accuracy"], "new_accuracy": n["accuracy"], "accuracy_difference": d_acc,
                         "old_gain": o.get("normalised_gain"), "new_gain": n.get("normalised_gain"),
                         "n_tasks": n.get("n_tasks"), "regressed": d_acc < -tolerance}
            if (split, row) in stats:
                p = rows[row]["paired"] = stats[(split, row)]
                rows[row]["significant"] = bool(p["se"] and d_acc < -2 * p["se"]) or (not p["se"] and d_acc < 0)
        out[split] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results/eval_regression.json"))
    parser.add_argument("--tolerance", type=float, default=0.01, help="accuracy loss marked as a regression")
    parser.add_argument("--common", action="store_true", help="compare on the tasks both reports scored")
    args = parser.parse_args()
    old, new = (json.loads(p.read_text(encoding="utf-8")) for p in (args.old, args.new))
    diff = compare(old, new, args.tolerance, common=args.common)
    print(f"{'split':<20} {'row':<22} {'old':>7} {'new':>7} {'diff':>7}")
    for split, rows in diff.items():
        for row, r in rows.items():
            if "only_in" in r:
                print(f"{split:<20} {row:<22} (only in {r['only_in']})")
            else:
                mark = "  REGRESSED" if r["regressed"] and r.get("significant", True) else ""
                if r["regressed"] and not r.get("significant", True):
                    p = r["paired"]
                    mark = (f"  within noise (paired se {p['se']:.3f}, t {p['t']:+.2f}; {p['tasks_worse']} tasks "
                            f"worse, {p['tasks_better']} better by > 0.05)")
                print(f"{split:<20} {row:<22} {r['old_accuracy']:7.3f} {r['new_accuracy']:7.3f} "
                      f"{r['accuracy_difference']:+7.3f}{mark}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"old": str(args.old), "new": str(args.new), "common_tasks_only": args.common,
              "old_config": old.get("config"),
              "new_config": new.get("config"), "tolerance": args.tolerance, "splits": diff}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
