"""`loragen train hypernet`: fit the ICM-LoRA CVAE on the bank and write a safetensors + JSON checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from loragen.api.commands.train import add_lightning_args, trainer_kwargs


def add_parser(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser(
        "hypernet",
        help="train the ICM-LoRA CVAE hypernetwork",
        description="Train the CVAE that generates LoRA adapters from task descriptions on the bank's in-bank tasks "
        "(final adapters, trajectory checkpoints and paraphrases as augmentation). Writes config.json + "
        "model.safetensors.",
        epilog="example:\n  loragen train hypernet --bank bank.duckdb -o ckpt/ --max-epochs 300 "
        "--accelerator cpu --devices 2 --strategy ddp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bank", type=Path, default=None, help="bank file (default: the default bank)")
    p.add_argument("-o", "--output", type=Path, default=None, help="checkpoint directory (default: the default one)")
    p.add_argument("--config", type=Path, default=None, help="JSON or YAML HypernetConfig (model/condition/train)")
    p.add_argument("--batch-size", type=int, default=None, help="override train.batch_size")
    p.add_argument("--lr", type=float, default=None, help="override train.lr")
    p.add_argument("--kl-weight", type=float, default=None, help="override train.kl_weight")
    p.add_argument("--seed", type=int, default=None, help="override train.seed")
    p.add_argument("--representation", choices=["subspace", "canonical"], default=None,
                   help="override model.representation")
    add_lightning_args(p)
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
    from loragen.hypernet.checkpoint import default_checkpoint_dir
    from loragen.hypernet.train import snapshot, train_hypernet

    config = load_config(args)
    with Bank.open(args.bank) as bank:  # read everything, then close: DDP ranks each read the bank in turn
        source = snapshot(BankSource(bank), config)
    out = args.output or default_checkpoint_dir()
    path, _, trainer = train_hypernet(source, config, out, trainer_kwargs(args))
    if path is not None:
        print(f"wrote hypernet checkpoint {path} ({trainer.global_step} steps, {len(source.task_list)} tasks)")
    return 0
