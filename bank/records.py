"""Plain records the bank stores and returns: tasks, adapter metadata, search hits.

They are the contract between the bank and its users (task suite, generators, service); the DuckDB schema
lives in `bank/store/schema.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "heldout"]
AdapterKind = Literal["final", "checkpoint", "generated", "uploaded"]


@dataclass(frozen=True)
class TaskRecord:
    """A task: what it asks, how its labels are named, where its data comes from.

    Args:
        name: unique task name, e.g. "lang/pl-vs-cs".
        description: the template description stating what each label means.
        paraphrases: other wordings of the same description.
        labels: class names in label order.
        family: the task family ("lang", "entity", "locale", ...), for reporting.
        split: "train" (generators may learn from it) or "heldout" (never seen in training).
        data_ref: how to rebuild its data, e.g. {"suite": "builtin", "seed": 0}; task data is generated, not stored.
        heldout_paraphrases: wordings kept out of training, for the held-out-paraphrase evaluation.
    """

    name: str
    description: str
    labels: tuple[str, ...]
    paraphrases: tuple[str, ...] = ()
    family: str = ""
    split: Split = "train"
    data_ref: dict[str, Any] = field(default_factory=dict)
    heldout_paraphrases: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdapterRecord:
    """An adapter's metadata as stored in the bank (the tensors are fetched with `Bank.get`)."""

    id: str
    base_model: str
    r: int
    lora_alpha: float
    target_modules: tuple[str, ...]
    sha256: str
    task: str | None = None
    description: str | None = None
    kind: AdapterKind = "final"
    source: str = ""
    canonical: bool = True
    created_at: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit:
    """One search result: the adapter, its task and description, and the similarity (higher is closer)."""

    id: str
    score: float
    task: str | None = None
    description: str | None = None
