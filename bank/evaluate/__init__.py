"""The evaluation harness: base, oracle, mean, multi-task and retrieval baselines and any generators, scored per
evaluation split (in-bank, held-out task, held-out paraphrase, held-out wording) with normalised gain.

Usage::

    from loragen.bank.evaluate import evaluate
    with Bank.open(path) as bank:
        report = evaluate(bank, {"cvae": generator})
    print(report.table())
"""

from loragen.bank.evaluate.generation import DESCRIBED, PRIMARY, GenerationScorer, task_kind
from loragen.bank.evaluate.harness import (
    BASELINES,
    CONDITIONS,
    CONTROLS,
    N_EXAMPLES,
    EvalReport,
    FixedGenerator,
    evaluate,
    mean_adapter,
    random_description,
)
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
