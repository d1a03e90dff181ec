"""`loragen merge`: merge PEFT adapters into a base model and save the merged model."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="merge one or more PEFT adapters into a base model and save it",
        description="Merge PEFT LoRA adapters into a base model (in fp32 accumulation, on the GPU when present) "
        "and write the merged transformers model with save_pretrained.",
    )
    p.add_argument("adapters", nargs="+", type=Path, help="PEFT adapter directories")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory for the merged model")
    p.add_argument("--base-model", default=None, help="local transformers directory (default: packaged MiniLM)")
    p.add_argument("--weights", type=lambda s: [float(x) for x in s.split(",")], default=None,
                   help="comma-separated weight per adapter (default 1 each)")
    p.add_argument("--method", choices=["linear", "svd", "ties"], default="linear", help="how several are combined")
    p.add_argument("--rank", type=int, default=None, help="target rank for svd/ties")
    p.add_argument("--density", type=float, default=0.2, help="fraction of entries TIES keeps")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16 (weights of the saved model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from loragen.bank.base_model import copy_tokenizer_files, load_base_model
    from loragen.bank.device import resolve_device, resolve_dtype
    from loragen.bank.lora import load_peft, merge

    adapters = [load_peft(path) for path in args.adapters]  # all validated before the model is loaded
    model = load_base_model(args.base_model, dtype=resolve_dtype(args.dtype), device=resolve_device(args.device))
    merge(model, adapters, args.weights, method=args.method, rank=args.rank, density=args.density)
    model.save_pretrained(args.output)
    copy_tokenizer_files(args.base_model, args.output)
    print(f"merged {len(adapters)} adapter(s) into {args.output}")
    return 0
