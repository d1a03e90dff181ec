"""Helpers for the bank tests: MiniLM-shaped adapters without loading MiniLM, distinct tasks, banks on disk."""

from __future__ import annotations

import torch

from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.lora import LoraAdapter
from loragen.bank.records import TaskRecord

HIDDEN = 384  # all-MiniLM-L6-v2: 6 layers of 384-d attention


def minilm_adapter(
    seed: int = 0, r: int = 4, alpha: float = 8.0, layers: tuple[int, ...] = (0, 1), targets=("query", "value"),
    scale: float = 0.1, base_model: str = DEFAULT_BASE_MODEL,
) -> LoraAdapter:
    """A random adapter on MiniLM's attention projections (module paths as in transformers' BertModel)."""
    g = torch.Generator().manual_seed(seed)
    lora_A, lora_B = {}, {}
    for layer in layers:
        for t in targets:
            name = f"encoder.layer.{layer}.attention.self.{t}"
            lora_A[name] = torch.randn(r, HIDDEN, generator=g) * scale
            lora_B[name] = torch.randn(HIDDEN, r, generator=g) * scale
    return LoraAdapter(base_model=base_model, r=r, lora_alpha=alpha, lora_A=lora_A, lora_B=lora_B)


TOPICS = [
    "football matches", "baking bread", "stock market prices", "planets and stars", "car engines", "gardening",
    "classical music", "volcanoes", "medieval castles", "chess openings", "knitting", "coffee brewing",
    "tax returns", "hospital surgery", "video games", "wedding planning", "dinosaurs", "mountain climbing",
    "cryptocurrency", "ocean sharks", "poetry", "airline flights", "electric guitars", "vaccines", "yoga",
    "real estate", "photography", "elections", "earthquakes", "wine tasting", "ballet dancing", "robots",
    "beekeeping", "submarines", "fashion shows", "tennis", "origami", "skin care", "train timetables",
    "the Roman empire", "pet cats", "solar panels", "horror movies", "fishing", "chemistry labs",
    "skateboarding", "job interviews", "pizza", "rainforests", "space rockets",
]


def topic_tasks(n: int = 50) -> list[TaskRecord]:
    """`n` distinct topic-detection tasks, each with one stored paraphrase and one held-out paraphrase."""
    if n > len(TOPICS):
        raise ValueError(f"at most {len(TOPICS)} topic tasks, asked for {n}")
    return [
        TaskRecord(
            name=f"topic/{i:02d}",
            description=f"Decide whether a sentence is about {topic}: label 1 if it is, 0 if not.",
            labels=("other", topic),
            paraphrases=(f"Does this text talk about {topic}?",),
            heldout_paraphrases=(f"Flag the messages that concern {topic}.",),
            family="topic",
            split="heldout" if i % 5 == 0 else "train",
            data_ref={"suite": "test", "seed": i},
        )
        for i, topic in enumerate(TOPICS[:n])
    ]
