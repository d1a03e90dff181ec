"""`loragen train meta`: fit ABMLL (amortized Bayesian meta-learning of LoRA, in Pyro) on the suite's in-bank tasks."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser(
        "meta",
        help="train ABMLL, the Bayesian meta-learner (posterior adapters with uncertainty)",
        description="Fit ABMLL by SVI over minibatches of in-bank tasks: a global prior θ over task LoRA adapters and "
        "an amortized posterior q(φ | description), warm-started from the bank's adapters. Writes "
        "config.json + model.safetensors.",
        epilog="example:\n  loragen train meta --bank bank.duckdb -o ckpt/abmll --steps 200 --beta 1e-3 --gamma 1e-5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bank", type=Path, default=None, help="bank file (default: the default bank)")
    p.add_argument("--oracles", type=Path, default=None,
                   help="an oracle cache (PEFT oracles with tasks.json), used instead of a bank")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--config", type=Path, default=None, help="JSON or YAML MetaConfig (model/train/generate)")
    p.add_argument("--steps", "--max-steps", dest="steps", type=int, default=None, help="override train.steps")
    p.add_argument("--tasks-per-batch", type=int, default=None, help="override train.tasks_per_batch")
    p.add_argument("--examples-per-task", type=int, default=None, help="override train.examples_per_task")
    p.add_argument("--beta", type=float, default=None, help="override train.beta (KL of φ_t to θ)")
    p.add_argument("--gamma", type=float, default=None, help="override train.gamma (KL of θ to its hyperprior)")
    p.add_argument("--lr", type=float, default=None, help="override train.lr")
    p.add_argument("--inner-steps", type=int, default=None, help="override train.inner_steps (ABML refinement)")
    p.add_argument("--seed", type=int, default=None, help="override train.seed")
    p.add_argument("--max-tasks", type=int, default=None, help="train on at most this many in-bank tasks")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress-bar", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace):
    from loragen.meta.config import MetaConfig

    data = MetaConfig.from_file(args.config).to_dict() if args.config is not None else {}
    for key in ("steps", "tasks_per_batch", "examples_per_task", "beta", "gamma", "lr", "inner_steps", "seed"):
        value = getattr(args, key)
        if value is not None:
            data.setdefault("train", {})[key] = value
    return MetaConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    from loragen.bank.tasks import BankSource, OracleCacheSource
    from loragen.meta.train import train_abmll

    config = load_config(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.oracles is not None and args.bank is None:
        _, _, history = train_abmll(OracleCacheSource(args.oracles), config, args.output, max_tasks=args.max_tasks,
                                    progress=not args.no_progress_bar)
    else:
        from loragen.bank.store import Bank

        with Bank.open(args.bank) as bank:
            _, _, history = train_abmll(BankSource(bank), config, args.output, max_tasks=args.max_tasks,
                                        progress=not args.no_progress_bar)
    elbo = history["elbo"]
    tail = sum(elbo[-10:]) / max(1, len(elbo[-10:]))
    print(f"wrote ABMLL checkpoint {args.output} ({len(elbo)} SVI steps, final ELBO/task {tail:.2f}, "
          f"{history['seconds']:.0f} s)")
    return 0
