"""`loragen trust fit`: fit the trust score `generate` prints, on evaluation cases the generators never trained on."""

from __future__ import annotations

import argparse
from pathlib import Path

from loragen.api.commands._options import (
    add_bank,
    add_no_progress,
    add_seed,
    add_threads,
    apply_threads,
    positive_int,
)

EPILOG = """examples:
  loragen trust fit --bank bank.duckdb --method cvae=runs/hypernet --method abmll=runs/meta --method retrieve \\
      --split heldout_task --split heldout_paraphrase

Writes CHECKPOINT/trust.json for cvae and abmll and <bank>.trust-retrieve.json for retrieve (each holds the
calibration cases and the fp16 embeddings of the generator's training wordings, so `generate` scores without the
bank), plus the cross-validated report (--json) and the predicted-vs-measured diagram (--plot). Calibrate on
splits the generators never trained on: heldout_task, heldout_paraphrase (and any held-out wording split).
A bank of generation tasks (a causal LM's (input, output) tasks, e.g. the SmolLM2 suite) is calibrated on exact
match of the greedy completion instead of accuracy, asked with the description or with (input, output) examples.
"""

REFIT_EPILOG = """examples:
  loragen trust refit runs/hypernet/trust.json runs/meta/trust.json bench/results/trust.json

A trust file fits its model from its cases when loaded, so a newer loragen's trust model already applies to it;
refit rewrites the cross-validated metrics it carries (reported by `loragen --version` for shipped generators).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from loragen.bank.evaluate import ALL_SPLITS

    p = sub.add_parser("trust", help="fit the trust score (expected accuracy) of the generators",
                       description="Calibrate the trust score `generate` prints.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    f = actions.add_parser("fit", help="fit a trust model per method on held-out evaluation cases",
                           description="Generate an adapter per evaluation case and method, measure its accuracy "
                           "on the task's test data, compute the label-free trust features, fit the trust model "
                           "(task-grouped cross-validation) and write it next to each checkpoint.",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bank(f)
    f.add_argument("--method", action="append", required=True, metavar="NAME[=CHECKPOINT]",
                   help="cvae or abmll with its checkpoint directory (default: the training command's location), or "
                   "retrieve; repeatable (the methods' adapters are also compared with each other)")
    f.add_argument("--split", action="append", choices=ALL_SPLITS, default=None,
                   help="calibration split (repeatable; default: every split except in_bank, the hand-written "
                   "heldout_wording included)")
    f.add_argument("--condition", action="append", choices=["description", "labels", "examples"], default=None,
                   help="what each request gets besides the wording (repeatable; default: all three; "
                   "generation tasks take no label names, so \"labels\" is left out for them)")
    f.add_argument("--max-tasks", type=positive_int, default=None, metavar="N",
                   help="at most N tasks per split (fixed random sample)")
    f.add_argument("--max-examples", type=positive_int, default=None, metavar="N",
                   help="test examples per task the accuracy is measured on (default: 128 for classification, all "
                   "of a suite task's; 32 greedy completions for generation)")
    add_seed(f, "sampling seed of the generators", default=0)
    f.add_argument("--json", type=Path, default=Path("bench/results/trust.json"), help="the cross-validated report")
    f.add_argument("--plot", type=Path, default=Path("bench/results/trust.png"), help="predicted vs measured PNG")
    f.add_argument("--no-write", action="store_true", help="report only; do not write the trust files")
    add_threads(f)
    add_no_progress(f)
    f.set_defaults(func=run_fit)

    r = actions.add_parser("refit", help="refit trust models on the cases they hold, with this loragen's model",
                           description="Re-score stored calibration cases with this loragen's trust model (no "
                           "generation, no bank): rewrite each trust file's cross-validated metrics, re-score each "
                           "method of a `trust fit` report, old and new metrics side by side.",
                           epilog=REFIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="a trust file (CHECKPOINT/trust.json) or a `loragen trust fit` report (its --json)")
    r.add_argument("--manifest", type=Path, default=None,
                   help="a release manifest whose trust metrics to rewrite for the methods refitted")
    r.add_argument("--json", type=Path, default=Path("bench/results/trust_refit.json"),
                   help="the side-by-side report")
    r.add_argument("--plot", type=Path, default=Path("bench/results/trust_refit.png"),
                   help="predicted vs measured PNG")
    r.add_argument("--no-write", action="store_true", help="report only; leave the trust files as they are")
    r.add_argument("--without", action="append", default=[], metavar="FEATURE",
                   help="score as if FEATURE had never been measured (repeatable; e.g. entropy_own, max_prob_own "
                   "and balance_own: a user who gives no --inputs); report only, nothing is written")
    r.set_defaults(func=run_refit)


def run_fit(args: argparse.Namespace) -> int:
    from loragen.api.trust_fit import fit_bank

    apply_threads(args)
    report = fit_bank(args.bank, args.method, splits=args.split, conditions=args.condition,
                      max_tasks=args.max_tasks, max_examples=args.max_examples, seed=args.seed,
                      write=not args.no_write, json_path=args.json, plot_path=args.plot,
                      progress=not args.no_progress)
    for method, entry in report["methods"].items():
        print(f"{method}: {entry['metrics']['n']} cases, {_line(entry['metrics'])} (cross-validated); trust file: "
              f"{entry['trust_file'] or 'not written'}")
    print(f"JSON: {args.json}\nchart: {report.get('plot') or 'not drawn (matplotlib is not installed)'}")
    return 0


def run_refit(args: argparse.Namespace) -> int:
    from loragen.api.trust_refit import refit

    report = refit(args.files, write=not args.no_write, json_path=args.json, plot_path=args.plot,
                   manifest=args.manifest, without=args.without)
    for e in report["entries"]:
        print(f"{e['method']} ({e['source']}): {_line(e['before'])} -> {_line(e['metrics'])}")
    print(f"JSON: {args.json}\nchart: {report.get('plot') or 'not drawn (matplotlib is not installed)'}")
    return 0


def _line(m: dict | None) -> str:
    if not m:
        return "no metrics recorded"
    sp = "n/a" if m.get("spearman") is None else f"{m['spearman']:.2f}"
    au = "n/a" if m.get("auroc_below_0.7") is None else f"{m['auroc_below_0.7']:.2f}"
    cov = m.get("interval_coverage")
    return (f"mean |predicted - measured| {m['mean_abs_error']:.3f}, Spearman {sp}, AUROC(acc < 0.7) {au}, "
            f"chance-level above 0.8: "
            f"{m['chance_above_0.8']}/{m['chance_level']}" + ("" if cov is None else f", interval coverage {cov:.2f}"))
