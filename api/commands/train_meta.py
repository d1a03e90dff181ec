"""`loragen train meta`: fit ABMLL (amortized Bayesian meta-learning of LoRA, in Pyro) on a bank's in-bank tasks:
the built-in suite's, or a user's own (stored examples, their base model's likelihood)."""

from __future__ import annotations

import argparse
from pathlib import Path

from loragen.api.commands._options import (
    add_base_model,
    add_train_options,
    apply_threads,
    non_negative_float,
    non_negative_int,
    positive_int,
    train_output,
)


def add_parser(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser(
        "meta",
        help="train ABMLL, the Bayesian meta-learner (posterior adapters with uncertainty)",
        description="Fit ABMLL by SVI over minibatches of in-bank tasks: a global prior θ over task LoRA adapters and "
        "an amortized posterior q(φ | description), warm-started from the bank's adapters. A bank of your own tasks "
        "(`loragen bank tasks import`) trains on their stored examples with the likelihood of their base model: a "
        "prototype classifier over an encoder for classification tasks, the token log-likelihood of the outputs on "
        "a causal LM for generation tasks. Writes config.json + model.safetensors. Training is a plain Pyro SVI loop "
        "on one device, so the Lightning flags of `train hypernet` (--accelerator, --devices, --strategy, "
        "--max-epochs, ...) do not apply.",
        epilog="examples:\n  loragen train meta --max-steps 300\n"
        "  loragen train meta --bank bank.duckdb -o ckpt/abmll --max-steps 200 --beta 1e-3 --gamma 1e-5\n"
        "  loragen train meta --bank my-bank.duckdb --base-model ./my-llama -o ckpt/my-abmll",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_options(p, "meta", "MetaConfig (model/train/generate)")
    p.add_argument("--steps", dest="max_steps", type=positive_int, default=None, help=argparse.SUPPRESS)  # old name
    g = p.add_argument_group("ABMLL options (meta only)", "fields of MetaConfig, and data sources, that the CVAE of "
                             "`train hypernet` does not have")
    g.add_argument("--oracles", type=Path, default=None, metavar="DIR",
                   help="directory of PEFT oracles with tasks.json, used instead of a bank (the CVAE needs a bank's "
                   "trajectories)")
    g.add_argument("--tasks-per-batch", metavar="N", type=positive_int, default=None,
                   help="override train.tasks_per_batch")
    g.add_argument("--examples-per-task", metavar="N", type=positive_int, default=None,
                   help="override train.examples_per_task")
    g.add_argument("--beta", metavar="X", type=non_negative_float, default=None,
                   help="override train.beta (KL of φ_t to θ)")
    g.add_argument("--gamma", metavar="X", type=non_negative_float, default=None,
                   help="override train.gamma (KL of θ to its hyperprior)")
    g.add_argument("--inner-steps", metavar="N", type=non_negative_int, default=None,
                   help="override train.inner_steps (ABML refinement)")
    g.add_argument("--max-tasks", metavar="N", type=positive_int, default=None,
                   help="train on at most this many in-bank tasks, evenly spread (quick runs)")
    add_base_model(g, "a bank of your own tasks: the base model whose likelihood ABMLL trains with",
                   default="the base model most of the tasks' final adapters are for")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace):
    from loragen.meta.config import MetaConfig

    data = MetaConfig.from_file(args.config).to_dict() if args.config is not None else {}
    for key, value in (("steps", args.max_steps), ("tasks_per_batch", args.tasks_per_batch),
                       ("examples_per_task", args.examples_per_task), ("beta", args.beta), ("gamma", args.gamma),
                       ("lr", args.lr), ("inner_steps", args.inner_steps), ("seed", args.seed)):
        if value is not None:
            data.setdefault("train", {})[key] = value
    return MetaConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    from loragen.bank.tasks import BankSource, OracleCacheSource
    from loragen.meta.train import train_abmll

    config = load_config(args)
    apply_threads(args)
    output = train_output(args, "meta")
    if args.oracles is not None and not args.oracles.is_dir():
        from loragen.bank.errors import ConfigError

        raise ConfigError(f"--oracles {args.oracles}: no such directory; give a folder of PEFT oracles with tasks.json")
    if args.oracles is not None and args.bank is None:
        _, _, history = train_abmll(OracleCacheSource(args.oracles), config, output, max_tasks=args.max_tasks,
                                    progress=not args.no_progress)
    else:
        from loragen.bank.store import Bank

        with Bank.open(args.bank) as bank:
            _, _, history = train_abmll(BankSource(bank), config, output, max_tasks=args.max_tasks,
                                        base_model=args.base_model, progress=not args.no_progress)
    elbo = history["elbo"]
    tail = sum(elbo[-10:]) / max(1, len(elbo[-10:]))
    print(f"wrote ABMLL checkpoint {output} ({len(elbo)} SVI steps, final ELBO/task {tail:.2f}, "
          f"{history['seconds']:.0f} s)")
    return 0
