"""A 4-task toy problem on a tiny random BERT: word-set tasks, prototype head, real tokenizer (packaged MiniLM's)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from loragen.bank.base_model import load_tokenizer
from loragen.bank.lora.functional import lora_applied

WORDS = {
    "fruit": ["apple", "pear", "plum", "grape", "lemon", "melon", "peach", "cherry"],
    "animal": ["horse", "tiger", "mouse", "eagle", "whale", "snake", "camel", "zebra"],
    "colour": ["red", "green", "blue", "yellow", "purple", "orange", "pink", "brown"],
    "tool": ["hammer", "saw", "drill", "wrench", "chisel", "spade", "rake", "axe"],
}
# (label 0 group, label 1 group): both orders of one pair appear, so only the description says which is which.
TASKS = [("fruit", "animal"), ("animal", "fruit"), ("colour", "tool"), ("tool", "colour")]


def description(pair: tuple[str, str]) -> str:
    return f"label 0 if the words are {pair[0]}s, label 1 if they are {pair[1]}s"


def task_examples(pair: tuple[str, str], n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = i % 2
        out.append((" ".join(rng.choices(WORDS[pair[y]], k=4)), y))
    return out


def description_embeddings(dim: int = 16, seed: int = 0) -> torch.Tensor:
    """Fixed random embeddings per toy description (T, dim), L2-normalised (the real code uses MiniLM)."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(len(TASKS), dim, generator=g), dim=-1)


class ToyClassifier:
    """Tiny random BERT, mean pooling, fixed label prototypes: an adapter alone defines the task."""

    def __init__(self, num_labels: int = 2, seed: int = 0) -> None:
        from transformers import BertConfig, BertModel

        torch.manual_seed(seed)
        self.tokenizer = load_tokenizer()
        config = BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
        self.model: nn.Module = BertModel(config).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(seed + 1)
        self.prototypes = F.normalize(torch.randn(num_labels, 32, generator=g), dim=-1)
        self.temperature = 10.0

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=16, return_tensors="pt")
        hidden = self.model(**enc).last_hidden_state  # (n, T, h)
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    def logits_from_factors(self, texts: Sequence[str], factors: Mapping, scaling: float,
                            num_labels: int = 2) -> torch.Tensor:
        with lora_applied(self.model, factors, scaling):
            emb = self._embed(texts)
        return self.temperature * emb @ self.prototypes[:num_labels].T

    def logits(self, texts: Sequence[str], adapter=None) -> torch.Tensor:
        if adapter is None:
            return self.temperature * self._embed(texts) @ self.prototypes.T
        with lora_applied(self.model, adapter):
            return self.temperature * self._embed(texts) @ self.prototypes.T
