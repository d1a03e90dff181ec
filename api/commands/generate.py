"""`loragen generate "DESCRIPTION" -o DIR`: write a generated LoRA adapter as a PEFT directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loragen.api.commands._options import (
    add_bank,
    add_base_model,
    add_checkpoint,
    add_device,
    add_seed,
    non_empty,
    positive_int,
)
from loragen.api.generators import METHODS  # the one method table (settings and the HTTP schema read it too)


def _examples(path: Path | None) -> tuple[tuple[str, int], ...] | tuple[tuple[str, str], ...] | None:
    """Examples from a JSONL file: {"text": ..., "label": k} lines (or [text, k] pairs) of a classification task,
    or {"input": ..., "output": ...} lines of a generation task.

    Raises:
        ConfigError: the file is missing, or a line is not a labelled example (naming the line).
    """
    from loragen.bank.errors import ConfigError

    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"--examples {path}: no such file; give a JSONL file with one "
                          '{"text": "...", "label": k} per line (classification), or one {"input": "...", "output": '
                          '"..."} per line (generation)')
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if isinstance(item, dict) and "input" in item:
                out.append((str(item["input"]), str(item["output"])))
                continue
            text, label = (item["text"], item["label"]) if isinstance(item, dict) else item
            out.append((str(text), int(label)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}:{i}: expected {{\"text\": ..., \"label\": k}}, [text, k] or "
                              f"{{\"input\": ..., \"output\": ...}}, got {line[:80]!r}") from None
    return tuple(out)


EPILOG = """examples:
  loragen generate "label 0 if the text is written in Polish, label 1 if it is written in Czech" -o out/pl-cs
  loragen generate "..." --labels Polish Czech --samples 4 --seed 0 -o out/samples
  loragen generate "answer with the capital of the country" --samples 4 --inputs questions.jsonl -o out/capitals

The checkpoint is the one named with --checkpoint, else yours at $LORAGEN_HOME/<hypernet|meta>, else the demo's
(`loragen demo`); the bank likewise (--bank, $LORAGEN_HOME/bank.duckdb, the demo's). The adapter is for the
checkpoint's base model. Trust: the expected accuracy of the adapter on the task with an interval, from the
generator's trust file (`loragen trust fit`); it says so when there is none. Uncertainty: similarity of the description to the nearest bank task, predictive entropy
(over labels, or per output token for a causal LM) and, with --samples > 1, mutual information between samples.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate a LoRA adapter from a task description",
        description="Generate a LoRA adapter (PEFT format) from a plain-language task description, for the base "
        "model the generator was trained for.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("description", type=non_empty("describe the task, e.g. 'label 0 if Polish, label 1 if Czech'"),
                   help="the task, saying what each label means")
    p.add_argument("-o", "--output", type=Path, required=True, help="PEFT directory (sample-<i>/ inside for several)")
    p.add_argument("--method", choices=METHODS, default="cvae", help="generator (default cvae)")
    p.add_argument("--labels", nargs="+", default=None, help="class names in label order")
    p.add_argument("--examples", type=Path, default=None, metavar="FILE",
                   help="JSONL examples: {\"text\":..., \"label\":k} (classification) or {\"input\":..., "
                   "\"output\":...} (generation; abmll refines on them)")
    p.add_argument("--inputs", type=Path, default=None, metavar="FILE",
                   help="JSONL inputs to score the adapter(s) on: {\"text\": ...} or {\"input\": ...} per line "
                   "(default: the examples' texts, else inputs of the nearest bank task); the trust score uses the "
                   "first 16 to check that the adapter does not give them all one label")
    p.add_argument("--samples", type=positive_int, default=1, metavar="N",
                   help="adapters to sample (1: the point estimate; more also measure their disagreement)")
    add_seed(p, "sampling seed (same seed, same adapters)")
    add_bank(p)
    add_checkpoint(p, "the generator's checkpoint directory")
    add_base_model(p, "the model the adapter is for; it must be the checkpoint's", default="the checkpoint's")
    p.add_argument("--no-score", action="store_true", help="skip the uncertainty scores")
    add_device(p)
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack
    from dataclasses import replace

    from loragen.api.base_models import BaseModels
    from loragen.api.commands.predict import read_texts
    from loragen.api.generators import REGISTRY, GeneratorContext
    from loragen.api.probe import example_judge
    from loragen.bank.generator import GenerationRequest, save_adapters

    inputs = read_texts(args.inputs, "--inputs") if args.inputs is not None else None
    request = GenerationRequest(  # checked before anything loads; the base model is settled below
        description=args.description,
        labels=tuple(args.labels) if args.labels else None,
        examples=_examples(args.examples),
        n_samples=args.samples,
        seed=args.seed,
    )
    models = BaseModels(args.device)
    with ExitStack() as stack:
        bank = _open_bank(args, stack)
        checkpoint, base = _checkpoint_and_base(args)
        classifier = None if base is None else (lambda: _classifier(models, base))
        ctx = GeneratorContext(bank=bank, device=args.device, checkpoint=checkpoint, classifier=classifier,
                               judge=example_judge(models))
        generator = REGISTRY[args.method].build(ctx)
        if base is None:  # retrieval without --base-model: the nearest adapter's, whichever it is
            base = generator.nearest_base_model(args.description)
        request = replace(request, base_model=base) if base else request
        adapters = generator.generate(request)
        for path in save_adapters(adapters, args.output):
            print(path)
        if not args.no_score:
            _print_scores(request, adapters, bank, models, inputs)
            _print_trust(args, request, adapters, bank, models, inputs, checkpoint, classifier)
    return 0


def _print_trust(args, request, adapters, bank, models, inputs, checkpoint, classifier) -> None:
    """The trust line: the expected accuracy with its interval, or plainly why there is none (`api.trust`)."""
    from loragen.api.trust import build_peers, score_trust
    from loragen.bank.errors import LoragenError

    try:
        peers = lambda: build_peers(args.method, bank, args.device, classifier)  # noqa: E731
        trust = score_trust(args.method, request, adapters, models=models, bank=bank, inputs=inputs,
                            checkpoint=checkpoint, peers=peers)
    except (LoragenError, ValueError) as err:
        print(f"trust: not scored ({err})")
        return
    print(trust.line())


def _checkpoint_and_base(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """The method's checkpoint (named > yours > shipped > the demo's) and the base model to generate for."""
    from loragen.api.base_models import base_for_checkpoint
    from loragen.api.lookup import CHECKPOINTS, announce, checkpoint_base_model, find_checkpoint
    from loragen.bank.base_model import canonical_base_model_id

    if args.method not in CHECKPOINTS:
        return None, canonical_base_model_id(args.base_model) if args.base_model else None
    found = find_checkpoint(args.method, args.checkpoint, args.base_model)
    announce(found, f"{args.method} checkpoint", args.verbose)
    own = checkpoint_base_model(found.path)
    return found.path, base_for_checkpoint(args.base_model, own, found.path)


def _classifier(models, base: str):
    """The classifier a generator refines with (ABMLL): the base model's, for an encoder; None for a causal LM."""
    from loragen.bank.base_model import is_causal_lm

    return None if is_causal_lm(base) else models.get(base).classifier


def _open_bank(args: argparse.Namespace, stack):
    """The bank retrieval and the scores read: --bank > the default bank > the demo's (see `api.lookup`).

    Raises:
        LoragenError: retrieval without any bank, or a named bank that does not exist.
    """
    from loragen.api.lookup import announce, find_bank
    from loragen.bank import paths
    from loragen.bank.errors import BankError, LoragenError
    from loragen.bank.store import Bank

    found = find_bank(args.bank)
    if found is None:
        if args.method == "retrieve":
            raise LoragenError(f"no bank at {paths.bank_path()} (nor the demo's); build one (`loragen bank build`), "
                               "import adapters (`loragen bank import`) or pass --bank")
        return None
    if found.origin == "named" and not found.path.is_file():
        raise LoragenError(f"--bank {found.path}: no such bank; pass an existing bank file")
    announce(found, "bank", args.verbose)
    try:
        return stack.enter_context(Bank.open(found.path))
    except BankError as err:
        if found.origin == "named" or args.method == "retrieve":
            raise
        print(f"note: not using bank {found.path} for the scores ({err})", file=sys.stderr)
        return None


def _print_scores(request, adapters, bank, models, inputs) -> None:
    """Uncertainty of the generated adapter(s) on the base model they are for (`api.uncertainty`)."""
    from loragen.api.uncertainty import probe_inputs, score_adapters
    from loragen.bank.errors import LoragenError

    probe = probe_inputs(bank, request.description, request.examples, inputs=inputs, base_model=request.base_model)
    try:
        scores = score_adapters(models, request.base_model, request.description, adapters, probe, bank=bank,
                                num_labels=request.num_labels)
    except (LoragenError, ValueError) as err:
        print(f"uncertainty: not scored ({err})")
        return
    if "predictive_entropy" not in scores:
        why = "the meta package is not installed" if probe else \
            "no inputs: pass --inputs FILE or --examples, or a bank with a related task's data (--bank)"
        print(f"uncertainty: not scored on inputs ({why})")
    elif "n_tokens" in scores:
        mi = scores["mutual_information"]
        mi_text = f"{mi:.4f}" if mi is not None else "n/a (one adapter; --samples N measures disagreement)"
        print(f"uncertainty: predictive entropy {scores['predictive_entropy']:.4f} nats/token, mutual information "
              f"{mi_text}, mean greedy-token probability {scores['confidence']:.3f} (uncalibrated) "
              f"({scores['n_adapters']} adapter(s) on {scores['n_inputs']} inputs, {scores['n_tokens']} tokens)")
    else:
        kind = "calibrated" if scores.get("calibrated") else "uncalibrated"
        print(f"uncertainty: confidence {scores['confidence']:.3f} ({kind}), predictive entropy "
              f"{scores['predictive_entropy']:.4f}, mutual information {scores['mutual_information']:.4f} nats "
              f"({scores['n_adapters']} adapter(s) on {scores['n_inputs']} texts)")
    if scores.get("description_similarity") is not None:
        print(f"nearest bank task: {scores.get('nearest_task')} (description similarity "
              f"{scores['description_similarity']:.3f})")
