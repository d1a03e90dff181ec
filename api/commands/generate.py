"""`loragen generate "DESCRIPTION" -o DIR`: write a generated LoRA adapter as a PEFT directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# method -> function(args) -> AdapterGenerator. Other methods (retrieval, abmll) add one line each.
METHODS: dict[str, str] = {
    "cvae": "api.commands.generate:_cvae",
}


def _cvae(args: argparse.Namespace):
    from hypernet.generate import CVAEGenerator

    return CVAEGenerator.from_checkpoint(args.checkpoint, base_model=args.base_model)


def _examples(path: Path | None) -> tuple[tuple[str, int], ...] | None:
    """Labelled examples from a JSONL file of {"text": ..., "label": k} lines (or [text, k] pairs)."""
    if path is None:
        return None
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, label = (item["text"], item["label"]) if isinstance(item, dict) else item
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ValueError(f"{path}:{i}: expected {{\"text\": ..., \"label\": k}} or [text, k], got {line[:80]!r}") \
                from None
        out.append((str(text), int(label)))
    return tuple(out)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a LoRA adapter from a task description",
        description="Generate a LoRA adapter (PEFT format) from a plain-language task description.",
        epilog="examples:\n  loragen generate \"label 0 if the text is written in Polish, label 1 if it is written in "
        "Czech\" -o out/pl-cs\n  loragen generate \"...\" --labels Polish Czech --samples 4 --seed 0 -o out/samples",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("description", help="the task, saying what each label means")
    p.add_argument("-o", "--output", type=Path, required=True, help="PEFT directory (sample-<i>/ inside for several)")
    p.add_argument("--method", choices=sorted(METHODS), default="cvae", help="generator (default cvae)")
    p.add_argument("--labels", nargs="+", default=None, help="class names in label order")
    p.add_argument("--examples", type=Path, default=None, help="JSONL labelled examples: {\"text\":..., \"label\":k}")
    p.add_argument("--samples", type=int, default=1, help="adapters to sample (1: the point estimate)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (same seed, same adapters)")
    p.add_argument("--bank", type=Path, default=None, help="bank file, for methods that read it (default bank)")
    p.add_argument("--checkpoint", type=Path, default=None, help="generator checkpoint (default location)")
    p.add_argument("--base-model", default=None, help="base model the adapter is for (default: packaged MiniLM)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from bank.errors import LoragenError

    try:
        return _run(args)
    except ValueError as err:  # bad input (GenerationRequest, examples file): a message, not a traceback
        if isinstance(err, LoragenError):
            raise
        print(f"loragen generate: error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import importlib

    from bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
    from bank.generator import GenerationRequest

    request = GenerationRequest(
        description=args.description,
        labels=tuple(args.labels) if args.labels else None,
        examples=_examples(args.examples),
        base_model=canonical_base_model_id(args.base_model or DEFAULT_BASE_MODEL),
        n_samples=args.samples,
        seed=args.seed,
    )
    module, func = METHODS[args.method].split(":")
    generator = getattr(importlib.import_module(module), func)(args)
    adapters = generator.generate(request)
    from bank.lora import save_peft

    paths = [save_peft(adapters[0], args.output)] if len(adapters) == 1 else [
        save_peft(a, args.output / f"sample-{i}") for i, a in enumerate(adapters)]
    for path in paths:
        print(path)
    return 0
