"""`loragen predict`: apply an adapter of the built-in classification suite to texts; print label probabilities."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loragen.api.commands._options import add_device
from loragen.bank.errors import LoragenError

EPILOG = """examples:
  loragen predict out/adapter --text "Dzień dobry, jak się masz?" --text "Dobrý den, jak se máš?"
  loragen predict out/adapter --file texts.jsonl --json > predictions.jsonl

F.jsonl holds one text per line, as {"text": "..."} or as a JSON string. With --json each output line is
{"text", "prediction", "label", "probabilities"}; otherwise a table.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify texts with a suite adapter and print label probabilities",
                       description="Apply a PEFT adapter of the built-in classification suite (MiniLM + fixed "
                       "label prototypes) to texts and print label probabilities.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapter", type=Path, help="PEFT adapter directory (e.g. from `loragen generate -o DIR`)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeat for several)")
    source.add_argument("--file", type=Path, help="JSON-lines file of texts")
    p.add_argument("--labels", default=None, help="comma-separated label names (default: the adapter's task)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from loragen.api.service import predict_texts
    from loragen.bank.lora import load_peft
    from loragen.bank.tasks import BUILTIN, get_provider

    texts = args.text or read_texts(args.file)
    adapter = load_peft(args.adapter)
    labels = args.labels.split(",") if args.labels else task_labels(adapter.metadata.get("task"))
    classifier = get_provider(BUILTIN).classifier(adapter.base_model or None, device=args.device)
    result = predict_texts(classifier, texts, adapter, num_labels=len(labels) if labels else 2, labels=labels)
    names = result.labels or [str(i) for i in range(len(result.probabilities[0]))]
    for text, probs, pred in zip(texts, result.probabilities, result.predictions):
        if args.json:
            print(json.dumps({"text": text, "prediction": pred, "label": names[pred],
                              "probabilities": dict(zip(names, probs))}, ensure_ascii=False))
        else:
            cells = "  ".join(f"{n}={p:.3f}" for n, p in zip(names, probs))
            print(f"{names[pred]:>12}  {cells}  {text[:60]}")
    return 0


def read_texts(path: Path) -> list[str]:
    """Texts from a JSON-lines file ({"text": ...} or a JSON string per line)."""
    if not path.is_file():
        raise LoragenError(f"{path}: no such file; give a JSON-lines file with one text per line.")
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise LoragenError(f"{path}:{n}: not JSON ({err}); write {{\"text\": \"...\"}} per line.") from None
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text:
            raise LoragenError(f"{path}:{n}: expected {{\"text\": \"...\"}} or a JSON string, got {line[:80]!r}")
        texts.append(text)
    if not texts:
        raise LoragenError(f"{path}: holds no texts.")
    return texts


def task_labels(task: str | None) -> list[str] | None:
    """Label names of a task of the built-in suite, or None when the adapter names no suite task."""
    if not task:
        return None
    from loragen.bank.tasks import BUILTIN, get_provider

    for spec in get_provider(BUILTIN).tasks():
        if spec.name == task:
            return list(spec.labels)
    print(f"note: task {task!r} is not in the built-in suite; labels are shown by index", file=sys.stderr)
    return None
