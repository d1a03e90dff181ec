"""`loragen train hypernet`: fit the ICM-LoRA CVAE on the bank and write a safetensors + JSON checkpoint."""

from __future__ import annotations

import argparse

from loragen.api.commands._options import (
    add_lightning,
    add_train_options,
    apply_threads,
    positive_int,
    train_output,
    trainer_kwargs,
)


def add_parser(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser(
        "hypernet",
        help="train the ICM-LoRA CVAE hypernetwork",
        description="Train the CVAE that generates LoRA adapters from task descriptions on the bank's in-bank tasks "
        "(final adapters, trajectory checkpoints and paraphrases as augmentation) with a Lightning Trainer: the "
        "built-in suite's or your own (classification or generation tasks, on your base model). Writes "
        "config.json + model.safetensors.",
        epilog="examples:\n  loragen train hypernet --max-epochs 300\n"
        "  loragen train hypernet --bank bank.duckdb -o ckpt/ --config hypernet/configs/suite.yaml --max-steps 2000 "
        "--accelerator cpu --devices 2 --strategy ddp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_options(p, "hypernet", "HypernetConfig (model/condition/train)")
    g = p.add_argument_group("CVAE options (hypernet only)", "fields of HypernetConfig that ABMLL's MetaConfig does "
                             "not have")
    g.add_argument("--batch-size", type=positive_int, default=None, help="override train.batch_size")
    g.add_argument("--kl-weight", type=float, default=None, help="override train.kl_weight")
    g.add_argument("--representation", choices=["subspace", "canonical"], default=None,
                   help="override model.representation")
    g.add_argument("--skip-mismatched", action="store_true",
                   help="train on the bank's majority adapter layout (base model, target modules) and skip adapters "
                   "of another one, instead of refusing the bank; ranks may differ either way (zero-padded)")
    add_lightning(p, "hypernet only: ABMLL trains with a plain Pyro SVI loop on one device, so `train meta` has none "
                  "of these")
    p.set_defaults(func=run)


def load_config(args: argparse.Namespace):
    from loragen.hypernet.config import HypernetConfig

    data = HypernetConfig.from_file(args.config).to_dict() if args.config is not None else {}
    for section, key, value in (("train", "batch_size", args.batch_size), ("train", "lr", args.lr),
                                ("train", "kl_weight", args.kl_weight), ("train", "seed", args.seed),
                                ("model", "representation", args.representation)):
        if value is not None:
            data.setdefault(section, {})[key] = value
    return HypernetConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    from loragen.bank.store import Bank
    from loragen.bank.tasks import BankSource
    from loragen.hypernet.train import snapshot, train_hypernet

    config = load_config(args)
    apply_threads(args)
    with Bank.open(args.bank) as bank:  # read everything, then close: DDP ranks each read the bank in turn
        source = snapshot(BankSource(bank), config)
    out = train_output(args, "hypernet")
    path, _, trainer = train_hypernet(source, config, out, trainer_kwargs(args), skip_mismatched=args.skip_mismatched)
    if path is not None:
        print(f"wrote hypernet checkpoint {path} ({trainer.global_step} steps, {len(source.task_list)} tasks)")
    return 0
