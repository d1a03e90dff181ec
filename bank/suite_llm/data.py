"""Task data: train/val/test ``(input, output)`` pairs rebuilt from a task's `data_ref`, deterministic from the seed.

A task's pool (every distinct input of its family cell, with its output; see `sources.pool`) is shuffled with a
seed derived from the suite seed and the task name, and cut into train, val and test: each input occurs in one
split only. Examples whose output equals the input are dropped (copying the input must never score).
"""

from __future__ import annotations

import random
import zlib

from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks.provider import TaskData
from loragen.bank.suite_llm import sources as S

SUITE_NAME = "smollm2-gen"

Pair = tuple[str, str]




def _check_ref(task: TaskRecord) -> dict:
    ref = task.data_ref
    missing = [k for k in ("family", "op", "part") if k not in ref]
    if ref.get("suite") != SUITE_NAME or missing:
        raise TaskDataError(f"task {task.name!r} has no {SUITE_NAME} suite data (data_ref={ref}); "
                         f"pass your own examples or use a task from loragen.bank.suite_llm.load_suite()")
    return ref


def task_pairs(task: TaskRecord) -> list[Pair]:
    """Every example of a suite task's cell, in the task's shuffled order (distinct inputs, output != input)."""
    ref = _check_ref(task)
    seed = int(ref.get("seed", 0))
    pairs = S.pool(ref["family"], ref["op"], ref["part"], seed)
    pairs = [(x, y) for x, y in dict(pairs).items() if y.casefold() != x.casefold()]
    random.Random(zlib.crc32(f"{seed}/{task.name}".encode())).shuffle(pairs)
    return pairs


def task_data(task: TaskRecord, n_train: int | None = None, n_val: int | None = None,
              n_test: int | None = None) -> TaskData:
    """Rebuild a suite task's train/val/test examples (inputs disjoint across splits).

    Args:
        task: a task from `load_suite` (its `data_ref` names the family cell, the seed and the split sizes).
        n_train, n_val, n_test: override the split sizes (smaller sets for tests and quick probes).

    Returns:
        The three splits, each a list of (input, output) pairs.

    Raises:
        ValueError: the task is not a suite task, or its pool is too small for the requested sizes.
    """
    ref = _check_ref(task)
    sizes = (n_train or int(ref["n_train"]), n_val or int(ref["n_val"]), n_test or int(ref["n_test"]))
    pairs = task_pairs(task)
    if sum(sizes) > len(pairs):
        raise ValueError(f"task {task.name!r} has {len(pairs)} distinct examples, fewer than the {sum(sizes)} "
                         f"asked for (train/val/test {sizes}); ask for smaller splits")
    a, b = sizes[0], sizes[0] + sizes[1]
    return TaskData(pairs[:a], pairs[a:b], pairs[b:b + sizes[2]])


def few_shot_examples(task: TaskRecord, n: int = 8, seed: int = 0) -> tuple[Pair, ...]:
    """`n` examples from a task's *training* split (what a user who gives "a few examples" gives; never test data).

    Raises:
        ValueError: `n` is larger than the training split.
    """
    train = list(task_data(task).train)
    if n > len(train):
        raise ValueError(f"asked for {n} few-shot examples; task {task.name!r} has {len(train)} training examples")
    random.Random(seed).shuffle(train)
    return tuple(train[:n])
