"""Uncertainty scores for generated adapters, shared by the service and the CLI.

The scoring itself is meta's (`meta.score.Scorer`: predictive entropy, mutual information between samples,
distance to the bank, and a calibrated confidence when a calibrator file is given). This module only decides
which inputs the predictive distribution is evaluated on, and turns the result into a flat JSON dict:

- the request's own example texts when it has them;
- otherwise validation texts of the nearest bank task (the task the description most resembles), from the task's
  provider (`bank.tasks`; the labels are not used, only the texts);
- otherwise no model-based scores, only the bank-distance signal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loragen.bank.errors import LoragenError
from loragen.bank.lora import LoraAdapter

log = logging.getLogger(__name__)
PROBE_TEXTS = 16

Scores = dict[str, float | bool | str | None]


def build_scorer(classifier: Any, bank: Any, calibrator: Path | None = None) -> Any | None:
    """meta's `Scorer` over the shared classifier and bank, or None when the meta package is not installed."""
    try:
        from loragen.meta.score import Scorer
    except ImportError:
        return None
    return Scorer.from_files(classifier, bank=bank, calibrator_path=calibrator)


def probe_inputs(bank: Any, description: str, examples: Sequence[tuple[str, int]] | None,
                 hits: Sequence[Any] | None = None) -> list[str]:
    """The texts to evaluate the adapters on (see the module docstring); `hits` saves a search already made."""
    if examples:
        return [text for text, _ in examples][:PROBE_TEXTS]
    hits = bank.search_text(description, k=1) if hits is None else hits
    if not hits or not hits[0].task:
        return []
    return list(_task_texts(bank, hits[0].task))


def _task_texts(bank: Any, task: str) -> tuple[str, ...]:
    key = (str(getattr(bank, "path", id(bank))), task)
    if key not in _TEXT_CACHE:
        _TEXT_CACHE[key] = _load_task_texts(bank, task)
    return _TEXT_CACHE[key]


_TEXT_CACHE: dict[tuple[str, str], tuple[str, ...]] = {}


def _load_task_texts(bank: Any, task: str) -> tuple[str, ...]:
    from loragen.bank.tasks import provider_name, task_data

    try:
        spec = bank.get_task(task)
        if provider_name(spec) is None:  # a task without rebuildable data: nothing to probe with
            return ()
        return tuple(text for text, _ in task_data(spec).val[:PROBE_TEXTS])
    except (LoragenError, KeyError, ValueError) as err:  # unknown task or provider, data it cannot rebuild
        log.debug("no probe texts for task %r: %s", task, err)
        return ()


def score(scorer: Any, description: str, adapters: Sequence[LoraAdapter], inputs: Sequence[str],
          num_labels: int = 2) -> Scores:
    """meta's uncertainty score as a flat dict (empty when there is no scorer or no input to score on)."""
    if scorer is None or not inputs:
        return {}
    result = scorer.score(description, list(adapters), list(inputs), num_labels=num_labels)
    return {k: v for k, v in result.to_dict().items() if v is None or isinstance(v, (bool, int, float, str))}
