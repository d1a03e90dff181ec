"""Compare two `loragen eval` JSON reports: accuracy and normalised gain per split and row, new minus old.

Accuracies are deterministic for fixed seeds, checkpoints and tasks (unlike timings), so two runs compare row by
row; a row or split in only one report is listed as such. Writes the differences as JSON.

Usage::

    python bench/compare_eval.py OLD.json NEW.json [--out bench/results/eval_regression.json] [--tolerance 0.01]

Exit status 0 always (a report, not a gate); rows that lost more than `--tolerance` accuracy are marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def compare(old: dict, new: dict, tolerance: float) -> dict:
    """Per split and row: old/new accuracy and normalised gain and their differences (new - old)."""
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
                         "regressed": d_acc < -tolerance}
        out[split] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results/eval_regression.json"))
    parser.add_argument("--tolerance", type=float, default=0.01, help="accuracy loss marked as a regression")
    args = parser.parse_args()
    old, new = (json.loads(p.read_text(encoding="utf-8")) for p in (args.old, args.new))
    diff = compare(old, new, args.tolerance)
    print(f"{'split':<20} {'row':<22} {'old':>7} {'new':>7} {'diff':>7}")
    for split, rows in diff.items():
        for row, r in rows.items():
            if "only_in" in r:
                print(f"{split:<20} {row:<22} (only in {r['only_in']})")
            else:
                mark = "  REGRESSED" if r["regressed"] else ""
                print(f"{split:<20} {row:<22} {r['old_accuracy']:7.3f} {r['new_accuracy']:7.3f} "
                      f"{r['accuracy_difference']:+7.3f}{mark}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"old": str(args.old), "new": str(args.new), "old_config": old.get("config"),
              "new_config": new.get("config"), "tolerance": args.tolerance, "splits": diff}
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
