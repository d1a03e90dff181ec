"""`loragen eval`: score base / oracle / mean / multi-task / retrieval adapters, and trained generators (CVAE, ABMLL),
on the suite's evaluation splits. A bank of generation tasks (a causal LM's, e.g. `bank build --provider
smollm2-gen`) is scored by exact match and log-likelihood, with the base+description row too."""

from __future__ import annotations

import argparse
from pathlib import Path

from loragen.api.commands._options import add_bank, add_no_progress, add_threads, non_negative_int, positive_int

EPILOG = """examples:
  loragen eval --bank ./bank.duckdb
  loragen eval --split in_bank --split heldout_task --max-examples 128 --json bench/results/eval.json
  loragen eval --split all --max-tasks 40        # + heldout_wording: hand-written wordings never trained on
  loragen eval --method cvae=runs/hypernet --method abmll=runs/meta --condition description --condition examples
  loragen eval --bank gen.duckdb --max-examples 32 --multitask-steps 40   # generation tasks (SmolLM2 suite)
  loragen eval --method cvae=runs/hypernet --split heldout_task --split heldout_wording --trust
      # + each stored trust file (`loragen trust fit`) scored on these cases: predicted vs measured, eval_trust.png
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate adapter sources on the built-in suite (table, JSON, PNG chart)",
        description="Accuracy per task and split of the base model, the oracles, the mean bank adapter, a "
        "multi-task LoRA and retrieval, with normalised gain (acc - base) / (oracle - base) per split. For a bank of "
        "generation tasks (causal LM): exact match of the greedy completion and mean log-likelihood of the reference "
        "output, gain on exact match, plus base+description (the description as the system prompt).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bank(p)
    p.add_argument("--split", action="append",
                   choices=["in_bank", "heldout_task", "heldout_paraphrase", "heldout_wording", "all"], default=None,
                   help="evaluation split (repeatable; default: in_bank, heldout_task, heldout_paraphrase). "
                   "heldout_wording asks every task with 3 hand-written wordings no training text uses (questions, "
                   "classes named in reverse label order, ...) and reports wording_minus_template per method; "
                   "'all' is all four")
    p.add_argument("--baseline", action="append",
                   choices=["base", "oracle", "mean", "multitask", "retrieval", "base+description"], default=None,
                   help="baseline to include (repeatable; default: all; base+description: generation tasks only)")
    p.add_argument("--method", action="append", default=None, metavar="NAME[@LABEL][=CHECKPOINT]",
                   help="a trained generator to score too: cvae or abmll, optionally with its checkpoint directory "
                   "(default: the training command's location); repeatable; @LABEL names the row, to compare "
                   "two checkpoints of one method side by side (abmll@seed1=runs/a1 --method abmll@seed2=runs/a2)")
    p.add_argument("--condition", action="append", choices=["description", "labels", "examples"], default=None,
                   help="what each --method gets besides the description: nothing, the label names, or 8 labelled "
                   "training examples (repeatable; default: all three, one row each; generation tasks: description "
                   "only)")
    p.add_argument("--control", action="append", choices=["random", "othertask", "none"], default=None,
                   help="random-description controls for retrieval and each --method: a random string of the same "
                   "length, or another task's description (repeatable; default: both; 'none' skips them)")
    p.add_argument("--text-style", choices=["words", "sentences"], default="words",
                   help="test texts: the tasks' own word strings, or sentence-shaped texts of real words "
                   "(evaluation only; language tasks only, the others are left out)")
    p.add_argument("--max-examples", type=positive_int, default=64, metavar="N",
                   help="test examples per task (default 64)")
    p.add_argument("--max-tasks", type=positive_int, default=None, metavar="N",
                   help="at most N tasks per split (fixed random sample)")
    p.add_argument("--multitask-steps", type=positive_int, default=300, metavar="N",
                   help="training steps of the multi-task LoRA (default 300)")
    p.add_argument("--predictive-samples", type=non_negative_int, default=0, metavar="S",
                   help="generation tasks: report each method's per-token calibration (token_ece, token_nll) on "
                        "the test outputs, the --method generators' from S sampled adapters averaged "
                        "(default 0: not measured; 8 is a good choice)")
    p.add_argument("--trust", action="store_true",
                   help="also score each --method's and retrieval's STORED trust file (`loragen trust fit`) on the "
                   "evaluation's cases: predicted vs measured accuracy per case (cases of the trust model's own "
                   "calibration tasks predicted with those tasks left out), a \"trust\" section in the JSON and "
                   "PLOT_trust.png; one more generation and probe pass per case")
    add_threads(p)
    p.add_argument("--json", type=Path, default=Path("bench/results/eval.json"), help="where the JSON report goes")
    p.add_argument("--plot", type=Path, default=Path("bench/results/eval.png"), help="where the PNG chart goes")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from loragen.api.generators import build_methods
    from loragen.api.trust_fit import bank_scorer
    from loragen.bank.evaluate import ALL_SPLITS, BASELINES, CONDITIONS, CONTROLS, EVAL_SPLITS, evaluate
    from loragen.bank.evaluate.generation import task_kind
    from loragen.bank.store import Bank
    from loragen.bank.train import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.multitask_steps
    config = TrainConfig(steps=steps, min_steps=steps, batch_size=32, stop_loss=0.0,
                         num_checkpoints=min(3, steps - 1))
    baselines, conditions = args.baseline or BASELINES, args.condition or CONDITIONS
    with Bank.open(args.bank) as bank:
        finals = {r.task: r.id for r in bank.adapters(kind="final")}
        built = [t for t in bank.tasks() if t.name in finals]
        kind = task_kind(built)
        # scored as `loragen trust fit` scores: the tasks' classifier, or the causal LM of generation tasks
        scorer, classifier = bank_scorer(bank, kind, finals, built[0]) if built else (None, None)
        methods, checkpoints = build_methods(args.method or [], bank, classifier, labels=True, retrieve=False)
        splits = ALL_SPLITS if "all" in (args.split or ()) else tuple(dict.fromkeys(args.split or EVAL_SPLITS))
        report = evaluate(bank, methods, splits=splits, baselines=baselines,
                          max_examples=args.max_examples, max_tasks=args.max_tasks, classifier=classifier,
                          lm=scorer if classifier is None else None,
                          multitask_config=config, progress=not args.no_progress, conditions=conditions,
                          controls=[c for c in args.control or CONTROLS if c != "none"],
                          text_style=args.text_style, predictive_samples=args.predictive_samples)
        if args.trust:
            from loragen.api.trust_check import check_evaluation, diagram_path

            report.trust = check_evaluation(bank, report, methods, checkpoints, scorer, conditions=conditions,
                                            retrieval="retrieval" in baselines, max_examples=args.max_examples,
                                            plot_path=diagram_path(args.plot), progress=not args.no_progress)
    report.config["arguments"] = {k: v if isinstance(v, (int, float, list, type(None))) else str(v)
                                  for k, v in vars(args).items() if k != "func"}
    print(report.table())
    if report.trust is not None:
        from loragen.api.trust_check import trust_table

        print(trust_table(report.trust))
    print(f"JSON: {report.save_json(args.json)}\nchart: {report.plot(args.plot)}")
    if report.trust is not None:
        print(f"trust chart: {report.trust.get('plot') or 'not drawn (no calibrated method, or no matplotlib)'}")
    return 0
