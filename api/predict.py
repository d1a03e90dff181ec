"""Label probabilities of a prototype classifier with an adapter applied: the service's `predict` and
`loragen predict` on an encoder adapter."""

from __future__ import annotations

from typing import Any

import torch

from loragen.api.errors import ApiError
from loragen.api.schemas import PredictRequest, PredictResponse
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.errors import LoragenError
from loragen.bank.lora import LoraAdapter


def predict_texts(classifier: Any, texts: list[str], adapter: LoraAdapter | None, *, num_labels: int = 2,
                  labels: list[str] | None = None) -> PredictResponse:
    """Run a prototype classifier on `texts` (with `adapter` applied) and return label probabilities."""
    logits = classifier.logits(list(texts), adapter, num_labels=num_labels)  # (n, num_labels)
    probs = torch.softmax(logits.float(), dim=-1)
    return PredictResponse(probabilities=probs.tolist(), predictions=probs.argmax(-1).tolist(), labels=labels)


def predict_request(bank: Any, models: Any, request: PredictRequest) -> PredictResponse:
    """The service's predict: the adapter's base model from `models` (under its lock); the label count and names
    from the adapter's task when the bank knows it.

    Raises:
        ApiError: 422 for an adapter of a causal LM (it completes text: `loragen predict` prints completions).
    """
    adapter, labels = None, None
    if request.adapter_id is not None:
        adapter = bank.get(request.adapter_id)
        labels = _task_labels(bank, adapter.metadata.get("task"))
    loaded = models.get(adapter.base_model if adapter is not None else DEFAULT_BASE_MODEL)
    if loaded.causal:
        raise ApiError(422, "invalid_request", "this adapter is for a causal LM, which completes text rather than "
                       "classifying it; run `loragen predict ADAPTER --text ...` on a downloaded copy.")
    num_labels = request.num_labels or (len(labels) if labels else 2)
    if labels is not None and len(labels) != num_labels:
        labels = None
    with loaded.lock:
        return predict_texts(loaded.classifier, request.texts, adapter, num_labels=num_labels, labels=labels)


def _task_labels(bank: Any, task: str | None) -> list[str] | None:
    if not task:
        return None
    try:
        return list(bank.get_task(task).labels)
    except LoragenError:  # a task name the bank has no record of
        return None
