"""`loragen trust fit`: fit the trust score `generate` prints, on evaluation cases the generators never trained on."""

from __future__ import annotations

import argparse
import sys
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
    f.add_argument("--max-examples", type=positive_int, default=64, metavar="N",
                   help="test examples per task the accuracy is measured on (default 64)")
    add_seed(f, "sampling seed of the generators", default=0)
    f.add_argument("--json", type=Path, default=Path("bench/results/trust.json"), help="the cross-validated report")
    f.add_argument("--plot", type=Path, default=Path("bench/results/trust.png"), help="predicted vs measured PNG")
    f.add_argument("--no-write", action="store_true", help="report only; do not write the trust files")
    add_threads(f)
    add_no_progress(f)
    f.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from loragen.api.trust_fit import eval_cases, fit_trust
    from loragen.bank.evaluate import ALL_SPLITS
    from loragen.bank.store import Bank

    apply_threads(args)
    splits = args.split or [s for s in ALL_SPLITS if s != "in_bank"]
    with Bank.open(args.bank) as bank:
        finals = {r.task: r.id for r in bank.adapters(kind="final")}
        kind = _kind(bank, finals)
        cases = eval_cases(bank, splits, args.condition or ("description", "labels", "examples"), args.max_tasks,
                           args.seed, kind=kind)
        if not cases:
            from loragen.bank.errors import TaskDataError

            raise TaskDataError(f"splits {splits} hold no {kind} task in {bank.path}; build held-out "
                                "tasks (`loragen bank build`) or name other --split")
        if kind == "generation":  # scored by exact match on the causal LM the bank's adapters are for
            from loragen.bank.evaluate.generation import bank_base_model
            from loragen.bank.train import CausalLM

            scorer, classifier = CausalLM(bank_base_model(bank, finals)), None
        else:
            scorer = classifier = _classifier(bank, cases[0].task)
        generators, checkpoints = _generators(args.method, bank, classifier)
        report = fit_trust(bank, generators, cases, scorer, checkpoints=checkpoints,
                           max_examples=args.max_examples, seed=args.seed, write=not args.no_write,
                           json_path=args.json, plot_path=args.plot, progress=not args.no_progress)
    for method, entry in report["methods"].items():
        m = entry["metrics"]
        sp = "n/a" if m["spearman"] is None else f"{m['spearman']:.2f}"
        au = "n/a" if m["auroc_below_0.7"] is None else f"{m['auroc_below_0.7']:.2f}"
        print(f"{method}: {m['n']} cases, mean |predicted - measured| {m['mean_abs_error']:.3f}, Spearman {sp}, "
              f"AUROC(acc < 0.7) {au}, chance-level above 0.8: {m['chance_above_0.8']}/{m['chance_level']} "
              f"(cross-validated); trust file: {entry['trust_file'] or 'not written'}")
    print(f"JSON: {args.json}\nchart: {report.get('plot') or 'not drawn (matplotlib is not installed)'}")
    return 0


def _kind(bank, finals) -> str:
    """"generation" when the bank's built tasks (`finals`: task -> final adapter id) are (input, output) tasks,
    else "classification"."""
    from loragen.bank.errors import TaskDataError
    from loragen.bank.evaluate.generation import task_kind

    tasks = [t for t in bank.tasks() if t.name in finals]
    try:
        return task_kind(tasks) if tasks else "classification"
    except TaskDataError as err:  # a bank of both kinds: its classification tasks, as before generation tasks
        print(f"warning: {err}; fitting on its classification tasks", file=sys.stderr)
        return "classification"


def _classifier(bank, task):
    """The classifier the tasks are scored with: their provider's, else (a user's stored task) one on the base
    model of the task's bank adapter."""
    from loragen.api.base_models import load_model
    from loragen.bank.errors import TaskDataError
    from loragen.bank.tasks import classifier_for

    try:
        return classifier_for(task)
    except TaskDataError:
        bases = [r.base_model for r in bank.adapters(kind="final") if r.task == task.name and r.base_model]
        if not bases:
            raise
        return load_model(bases[0], "cpu").classifier


def _generators(specs: list[str], bank, classifier) -> tuple[dict, dict]:
    """`NAME[=CHECKPOINT]` -> (method -> generator, method -> checkpoint directory), via the method registry.

    Raises:
        CheckpointError: an unknown method or one that cannot be loaded (with the command that makes it).
    """
    from loragen.api.generators import REGISTRY, GeneratorContext, abmll_checkpoint_dir, build_generators
    from loragen.bank import paths
    from loragen.bank.errors import CheckpointError

    contexts, checkpoints = {}, {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if name not in REGISTRY:
            raise CheckpointError(f"--method {name!r}: use one of {', '.join(REGISTRY)}")
        ckpt = Path(path) if path else None
        contexts[name] = GeneratorContext(bank, checkpoint=ckpt, classifier=lambda: classifier)
        checkpoints[name] = ckpt or {"cvae": lambda: paths.checkpoint_dir("hypernet"),
                                     "abmll": lambda: abmll_checkpoint_dir(None)}.get(name, lambda: None)()
    ready, unavailable = build_generators(tuple(contexts), contexts)
    if unavailable:
        raise CheckpointError("; ".join(f"--method {m}: {why}" for m, why in unavailable.items()))
    return ready, checkpoints
