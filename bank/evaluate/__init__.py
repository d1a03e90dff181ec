"""The evaluation harness: base, oracle, mean, multi-task and retrieval baselines and any generators, scored per
evaluation split (in-bank, held-out task, held-out paraphrase, held-out wording) with normalised gain.

Usage::

    from loragen.bank.evaluate import evaluate
    with Bank.open(path) as bank:
        report = evaluate(bank, {"cvae": generator})
    print(report.table())
"""

import importlib
from typing import Any

from loragen.bank.evaluate.splits import (
    ALL_SPLITS,
    EVAL_SPLITS,
    EvalSplit,
    WordingProvider,
    eval_descriptions,
    split_tasks,
    wording_provider,
)

__all__ = [
    "ALL_SPLITS", "BASELINES", "CONDITIONS", "CONTROLS", "DESCRIBED", "EVAL_SPLITS", "EvalReport", "EvalSplit",
    "FixedGenerator", "GenerationScorer", "N_EXAMPLES", "PRIMARY", "WordingProvider", "eval_descriptions", "evaluate",
    "mean_adapter", "random_description", "split_tasks", "task_kind", "wording_provider",
]

# The harness and the generation scorer import Lightning and the training stack (seconds); the split definitions do
# not. Loaded on first use (PEP 562), so `from loragen.bank.evaluate import ALL_SPLITS` (every CLI parser) stays fast.
_LAZY = {name: "generation" for name in ("DESCRIBED", "PRIMARY", "GenerationScorer", "task_kind")} | {
    name: "harness" for name in ("BASELINES", "CONDITIONS", "CONTROLS", "N_EXAMPLES", "EvalReport", "FixedGenerator",
                                 "evaluate", "mean_adapter", "random_description")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
