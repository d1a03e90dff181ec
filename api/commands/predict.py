"""`loragen predict ADAPTER`: apply an adapter to inputs on its own base model.

A causal-LM adapter completes each input (greedy by default, the prompt format of `bank.causal_lm`); an encoder
adapter classifies each text with the prototype classifier (`bank.train.classifier.PrototypeClassifier`) and
prints label probabilities.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loragen.api.commands._options import add_base_model, add_device, positive_int
from loragen.bank.errors import LoragenError

EPILOG = """examples:
  loragen predict out/adapter --text "Dzień dobry, jak się masz?" --text "Dobrý den, jak se máš?"
  loragen predict out/adapter --file texts.jsonl --json > predictions.jsonl
  loragen predict out/llm-adapter --text "What is the capital of France?" --max-new-tokens 16

F.jsonl holds one input per line, as {"text": "..."}, {"input": "..."} or a JSON string. The base model is the
adapter's own (base_model_name_or_path in adapter_config.json; a relative path is read from the adapter's folder)
unless --base-model says otherwise.
For a causal-LM adapter, --json prints {"text", "completion"} per input; otherwise "text -> completion".
For a classification adapter, --json prints {"text", "prediction", "label", "probabilities"}; otherwise a table.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="apply an adapter to inputs: completions (causal LM) or label probabilities",
                       description="Apply a PEFT adapter to inputs on its base model: a causal-LM adapter completes "
                       "each input; an encoder adapter classifies each text (prototype classifier) and prints label "
                       "probabilities.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapter", type=Path, help="PEFT adapter directory (e.g. from `loragen generate -o DIR`)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="an input (repeat for several)")
    source.add_argument("--file", type=Path, help="JSON-lines file of inputs")
    p.add_argument("--labels", default=None,
                   help="classification: comma-separated label names (default: the adapter's own)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, metavar="N",
                   help="causal LM: most tokens to generate per input (default 32; greedy)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    add_base_model(p, "the model to apply the adapter to", default="the adapter's own")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from loragen.api.base_models import base_for_adapters, load_model
    from loragen.bank.lora import load_peft

    texts = args.text or read_texts(args.file)
    adapter = load_peft(args.adapter)
    base = base_for_adapters([adapter], [args.adapter], args.base_model)
    loaded = load_model(base, args.device)
    if loaded.causal:
        _complete(loaded, adapter, texts, args)
    else:
        _classify(loaded.classifier, adapter, texts, args)
    return 0


def _complete(loaded, adapter, texts: list[str], args: argparse.Namespace) -> None:
    """Greedy completions with the adapter applied (as forward hooks; the base model is not modified)."""
    from loragen.bank.causal_lm import complete
    from loragen.bank.lora.functional import lora_applied

    device = next(loaded.model.parameters()).device
    with lora_applied(loaded.model, adapter.to(device)):
        completions = complete(loaded.model, loaded.tokenizer, texts, max_new_tokens=args.max_new_tokens)
    for text, completion in zip(texts, completions):
        if args.json:
            print(json.dumps({"text": text, "completion": completion}, ensure_ascii=False))
        else:
            print(f"{text[:60]} -> {completion}")


def _classify(classifier, adapter, texts: list[str], args: argparse.Namespace) -> None:
    from loragen.api.predict import predict_texts

    labels = args.labels.split(",") if args.labels else adapter_labels(adapter)
    result = predict_texts(classifier, texts, adapter, num_labels=len(labels) if labels else 2, labels=labels)
    names = result.labels or [str(i) for i in range(len(result.probabilities[0]))]
    for text, probs, pred in zip(texts, result.probabilities, result.predictions):
        if args.json:
            print(json.dumps({"text": text, "prediction": pred, "label": names[pred],
                              "probabilities": dict(zip(names, probs))}, ensure_ascii=False))
        else:
            cells = "  ".join(f"{n}={p:.3f}" for n, p in zip(names, probs))
            print(f"{names[pred]:>12}  {cells}  {text[:60]}")


def read_texts(path: Path, flag: str = "--file") -> list[str]:
    """Inputs from a JSON-lines file ({"text": ...}, {"input": ...} or a JSON string per line).

    Raises:
        LoragenError: a missing file, a line that is not such an input (naming the line), or no input at all.
    """
    if not path.is_file():
        raise LoragenError(f"{flag} {path}: no such file; give a JSON-lines file with one input per line.")
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise LoragenError(f"{path}:{n}: not JSON ({err}); write {{\"text\": \"...\"}} per line.") from None
        text = (item.get("text", item.get("input")) if isinstance(item, dict) else item)
        if not isinstance(text, str) or not text:
            raise LoragenError(f"{path}:{n}: expected {{\"text\": \"...\"}}, {{\"input\": \"...\"}} or a JSON "
                               f"string, got {line[:80]!r}")
        texts.append(text)
    if not texts:
        raise LoragenError(f"{path}: holds no texts.")
    return texts


def adapter_labels(adapter) -> list[str] | None:
    """Label names the adapter carries (generated adapters record them), else its built-in suite task's, else None
    (labels are then shown by index)."""
    labels = adapter.metadata.get("labels")
    if isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels):
        return labels
    return task_labels(adapter.metadata.get("task"))


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
