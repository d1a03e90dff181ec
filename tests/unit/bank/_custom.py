"""A user's own material for tests: tiny local base models (a BERT encoder, a Llama causal LM with a chat
tokenizer), learnable data files and manifests."""

from __future__ import annotations

import json
import random
from pathlib import Path

FRUIT = ("apple", "banana", "cherry", "grape", "melon", "peach")
VEHICLES = ("truck", "train", "plane", "boat", "bus", "car")
WORDS = ("cat", "dog", "sun", "hat", "pen", "cup", "box", "map")


def tiny_bert_dir(path: Path) -> Path:
    """A 2-layer, 32-d random BERT encoder with the packaged MiniLM's tokenizer, saved as a local directory."""
    import torch
    from transformers import BertConfig, BertModel

    from loragen.bank.base_model import load_tokenizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    BertModel(config).save_pretrained(path)
    load_tokenizer().save_pretrained(path)
    return path


def tiny_chat_llama_dir(path: Path) -> Path:
    """`tests._models.tiny_llama` with its character-level chat tokenizer, saved as a local directory."""
    from tests._models import tiny_llama, tiny_tokenizer

    tiny_llama().save_pretrained(path)
    tiny_tokenizer(chat=True).save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fruit_vs_vehicles(n: int = 80, seed: int = 0, named: bool = False) -> list[dict]:
    """An easy rule a tiny random encoder can learn: label 1 (vehicle) if the words name vehicles, 0 (fruit)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % 2
        label = ("fruit", "vehicle")[y] if named else y
        rows.append({"text": " ".join(rng.choices(VEHICLES if y else FRUIT, k=3)), "label": label})
    return rows


def shout(repeat: int = 2) -> list[dict]:
    """A generation task: the word in capitals."""
    return [{"input": w, "output": w.upper()} for w in WORDS * repeat]
