"""`loragen generate "DESCRIPTION" -o DIR`: write a generated LoRA adapter as a PEFT directory."""

from __future__ import annotations

import argparse
import json
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


def _examples(path: Path | None) -> tuple[tuple[str, int], ...] | None:
    """Labelled examples from a JSONL file of {"text": ..., "label": k} lines (or [text, k] pairs).

    Raises:
        ConfigError: the file is missing, or a line is not a labelled example (naming the line).
    """
    from loragen.bank.errors import ConfigError

    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"--examples {path}: no such file; give a JSONL file with one "
                          '{"text": "...", "label": k} per line')
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, label = (item["text"], item["label"]) if isinstance(item, dict) else item
            out.append((str(text), int(label)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}:{i}: expected {{\"text\": ..., \"label\": k}} or [text, k], got "
                              f"{line[:80]!r}") from None
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
    p.add_argument("description", type=non_empty("describe the task, e.g. 'label 0 if Polish, label 1 if Czech'"),
                   help="the task, saying what each label means")
    p.add_argument("-o", "--output", type=Path, required=True, help="PEFT directory (sample-<i>/ inside for several)")
    p.add_argument("--method", choices=METHODS, default="cvae", help="generator (default cvae)")
    p.add_argument("--labels", nargs="+", default=None, help="class names in label order")
    p.add_argument("--examples", type=Path, default=None, metavar="FILE",
                   help="JSONL labelled examples: {\"text\":..., \"label\":k}")
    p.add_argument("--samples", type=positive_int, default=1, metavar="N",
                   help="adapters to sample (1: the point estimate)")
    add_seed(p, "sampling seed (same seed, same adapters)")
    add_bank(p)
    add_checkpoint(p, "the generator's checkpoint directory")
    add_base_model(p, "the model the adapter is for")
    p.add_argument("--no-score", action="store_true", help="skip the uncertainty scores")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from loragen.api.generators import REGISTRY, GeneratorContext
    from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
    from loragen.bank.generator import GenerationRequest, save_adapters

    request = GenerationRequest(
        description=args.description,
        labels=tuple(args.labels) if args.labels else None,
        examples=_examples(args.examples),
        base_model=canonical_base_model_id(args.base_model or DEFAULT_BASE_MODEL),
        n_samples=args.samples,
        seed=args.seed,
    )
    with ExitStack() as stack:
        bank = _open_bank(args, stack)
        classifier = _Lazy(lambda: _classifier(args.device))
        ctx = GeneratorContext(bank=bank, device=args.device, checkpoint=args.checkpoint, classifier=classifier)
        adapters = REGISTRY[args.method].build(ctx).generate(request)
        for path in save_adapters(adapters, args.output):
            print(path)
        if not args.no_score:
            _print_scores(request, adapters, bank, classifier)
    return 0


class _Lazy:
    """Build a value on first call, then return the same one."""

    def __init__(self, build):
        self._build, self._value = build, None

    def __call__(self):
        if self._value is None:
            self._value = self._build()
        return self._value


def _classifier(device: str):
    from loragen.bank.tasks import BUILTIN, get_provider

    return get_provider(BUILTIN).classifier(device=device)


def _open_bank(args: argparse.Namespace, stack):
    """The bank when --bank is given or the method reads it (retrieval); it also feeds the bank-distance scores."""
    from loragen.bank import paths
    from loragen.bank.store import Bank

    if args.bank is None and args.method != "retrieve":
        return None
    if args.bank is None and not paths.bank_path().exists():
        from loragen.bank.errors import LoragenError

        raise LoragenError(f"no bank at {paths.bank_path()}; build one (`loragen bank build`) or pass --bank")
    return stack.enter_context(Bank.open(args.bank))


def _print_scores(request, adapters, bank, classifier) -> None:
    """Uncertainty of the generated adapter(s) (meta's scorer), evaluated on the examples' texts or, without
    examples, on texts of the nearest bank task."""
    from loragen.api.uncertainty import build_scorer, probe_inputs, score
    from loragen.bank.base_model import DEFAULT_BASE_MODEL
    from loragen.bank.errors import LoragenError

    if request.base_model != DEFAULT_BASE_MODEL:
        print(f"uncertainty: not scored (the scorer's classifier runs {DEFAULT_BASE_MODEL}, not {request.base_model})")
        return
    inputs = probe_inputs(bank, request.description, request.examples) if bank is not None else \
        [t for t, _ in request.examples or ()]
    if not inputs:
        print("uncertainty: not scored (pass --examples, or --bank to probe with texts of the nearest bank task)")
        return
    n = len(request.labels) if request.labels else max(2, 1 + max((y for _, y in request.examples or ()), default=1))
    try:
        scores = score(build_scorer(classifier(), bank), request.description, adapters, inputs, num_labels=n)
    except LoragenError as err:
        print(f"uncertainty: not scored ({err})")
        return
    if not scores:
        print("uncertainty: not scored (the meta package is not installed)")
        return
    kind = "calibrated" if scores.get("calibrated") else "uncalibrated"
    print(f"uncertainty: confidence {scores['confidence']:.3f} ({kind}), predictive entropy "
          f"{scores['predictive_entropy']:.4f}, mutual information {scores['mutual_information']:.4f} nats "
          f"({scores['n_adapters']} adapter(s) on {scores['n_inputs']} texts)")
    if scores.get("description_similarity") is not None:
        print(f"nearest bank task: {scores.get('nearest_task')} (description similarity "
              f"{scores['description_similarity']:.3f})")
