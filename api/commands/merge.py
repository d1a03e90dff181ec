"""`loragen merge`: merge PEFT adapters into a base model and save the merged model."""

from __future__ import annotations

import argparse
from pathlib import Path

from loragen.api.commands._options import UsageError, add_base_model, add_device, fraction, positive_int


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give one number per adapter, comma-separated (0.5,0.5)") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="merge one or more PEFT adapters into a base model and save it",
        description="Merge PEFT LoRA adapters into a base model (in fp32 accumulation, on the GPU when present) "
        "and write the merged transformers model (save_pretrained) with its tokenizer files. The folder appears "
        "complete or not at all (written beside it, then renamed); an existing merged model there is replaced.",
        epilog="examples:\n  loragen merge ./my-adapter -o ./merged\n"
        "  loragen merge ./a ./b --weights 0.7,0.3 --method ties --base-model ./tiny-llama -o ./merged\n\n"
        "The base model is the adapters' own (base_model_name_or_path in adapter_config.json; a relative path is "
        "read from the adapter's folder) unless --base-model says otherwise.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("adapters", nargs="+", type=Path, help="PEFT adapter directories")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory for the merged model")
    add_base_model(p, "the model to merge into", default="the adapters' own")
    p.add_argument("--weights", type=_weights, default=None, help="comma-separated weight per adapter (default 1 each)")
    p.add_argument("--method", choices=["linear", "svd", "ties"], default="linear", help="how several are combined")
    p.add_argument("--rank", type=positive_int, default=None, help="target rank for svd/ties")
    p.add_argument("--density", type=fraction, default=0.2, help="fraction of entries TIES keeps (default 0.2)")
    add_device(p)
    p.add_argument("--dtype", default="fp32", help="fp32 (default), bf16 or fp16: weights of the saved model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from loragen.api.base_models import base_for_adapters
    from loragen.bank.device import resolve_device, resolve_dtype
    from loragen.bank.lora import load_peft, save_merged_model

    if args.weights is not None and len(args.weights) != len(args.adapters):
        raise UsageError(f"--weights has {len(args.weights)} values for {len(args.adapters)} adapters; give one each")
    adapters = [load_peft(path) for path in args.adapters]  # all validated before the model is loaded
    base = base_for_adapters(adapters, args.adapters, args.base_model)  # the adapters' own unless overridden
    save_merged_model(adapters, args.output, base_model=base, weights=args.weights, method=args.method,
                      rank=args.rank, density=args.density, device=resolve_device(args.device),
                      dtype=resolve_dtype(args.dtype))
    print(f"merged {len(adapters)} adapter(s) into {args.output}")
    return 0
