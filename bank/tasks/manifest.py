"""A user's task manifest: their own tasks and the data files holding their examples.

A manifest is YAML (a mapping with a ``tasks`` list) or JSONL (one task object a line). Each task::

    name: reviews/sentiment            # unique
    description: label 1 if the review is positive, 0 if negative
    paraphrases: [...]                 # optional: other wordings (generators learn from them)
    heldout_paraphrases: [...]         # optional: wordings kept out of training
    split: train                       # or heldout (never trained on by generators)
    family: reviews                    # optional, for reporting
    labels: [negative, positive]       # classification: names in label order
    base_model: ./my-encoder           # optional: the base model its oracle is trained on (relative: to this file)
    data: data/sentiment.jsonl         # relative to this file

A data file is JSONL: ``{"text": ..., "label": k}`` lines (classification; `k` a label index or name) or
``{"input": ..., "output": ...}`` lines (generation), each optionally with ``"split": "train"|"val"|"test"``.
Without split keys the examples are split deterministically (80/10/10, seeded; at least one val and one test
example from 5 examples on). Every problem in the manifest and its data files is reported at once, with
``file:line``, in one `ConfigError`.

Usage::

    from loragen.bank.tasks.manifest import load_manifest
    for task in load_manifest("tasks.yaml"):
        bank.put_task(task.record, task.data.train, task.data.val, task.data.test)
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.errors import ConfigError, LoragenError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks.provider import TaskData
from loragen.bank.tasks.registry import STORED
from loragen.bank.train.classifier import NUM_SLOTS

Kind = Literal["classification", "generation"]
TASK_KEYS = ("name", "description", "paraphrases", "heldout_paraphrases", "split", "family", "labels", "base_model",
             "data")
SPLITS = ("train", "val", "test")
VAL_FRACTION = TEST_FRACTION = 0.1
_KEYS: dict[str, tuple[str, str]] = {"classification": ("text", "label"), "generation": ("input", "output")}


@dataclass(frozen=True)
class ManifestTask:
    """One task of a manifest: its record (data_ref provider "bank"), its examples and its kind."""

    record: TaskRecord
    data: TaskData
    kind: Kind


def task_kind(task: TaskRecord) -> Kind:
    """"classification" or "generation": from the task's data_ref, else from whether it has labels."""
    kind = (task.data_ref or {}).get("kind")
    if kind in _KEYS:
        return kind
    return "classification" if task.labels else "generation"


@dataclass
class _Example:
    line: int
    kind: Kind | None
    source: str  # text or input
    target: Any  # label (index or name) or output
    split: str | None


class _Problems(list):
    def add(self, where: str, message: str) -> None:
        self.append(f"{where}: {message}")


def load_manifest(path: str | os.PathLike, seed: int = 0) -> list[ManifestTask]:
    """Read and check a task manifest and every data file it names.

    Args:
        path: a .yaml/.yml or .jsonl manifest.
        seed: seed of the train/val/test split of data files without split keys.

    Raises:
        ConfigError: listing every problem found (unknown keys, a missing or empty data file, mixed example
            kinds, labels out of range or unknown, duplicate names, ...), each with file:line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such task manifest; give a .yaml or .jsonl file listing your tasks")
    problems = _Problems()
    if path.suffix in (".yaml", ".yml"):
        entries = _yaml_entries(path, problems)
    elif path.suffix == ".jsonl":
        entries = _jsonl_entries(path, problems)
    else:
        raise ConfigError(f"{path}: a task manifest is .yaml, .yml or .jsonl, not {path.suffix or 'extensionless'}")
    tasks: list[ManifestTask] = []
    first_line: dict[str, int] = {}
    for line, entry, key_lines in entries:
        task = _task(path, line, entry, key_lines, problems, seed)
        if task is None:
            continue
        name = task.record.name
        if name in first_line:
            problems.add(f"{path}:{line}", f"duplicate task name {name!r} (first at {path}:{first_line[name]})")
            continue
        first_line[name] = line
        tasks.append(task)
    if not entries and not problems:
        problems.add(str(path), "lists no tasks")
    if problems:
        raise ConfigError(f"task manifest {path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
    return tasks


def _yaml_entries(path: Path, problems: _Problems) -> list[tuple[int, Any, dict[str, int]]]:
    import yaml

    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problems.add(f"{path}:{mark.line + 1 if mark else 1}", f"not valid YAML ({' '.join(str(err).split())})")
        return []
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        problems.add(f"{path}:1", "expected a mapping with a `tasks:` list of tasks")
        return []
    for key in sorted(set(data) - {"tasks"}):
        problems.add(f"{path}:1", f"unknown top-level key {key!r} (a manifest holds `tasks:` only)")
    seq = next(v for k, v in root.value if k.value == "tasks")
    entries = []
    for node, entry in zip(seq.value, data["tasks"]):
        lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
        entries.append((node.start_mark.line + 1, entry, lines))
    return entries


def _jsonl_entries(path: Path, problems: _Problems) -> list[tuple[int, Any, dict[str, int]]]:
    entries = []
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as err:
            problems.add(f"{path}:{n}", f"not valid JSON ({err.msg})")
            continue
        entries.append((n, entry, dict.fromkeys(entry, n) if isinstance(entry, dict) else {}))
    return entries


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def _task(path: Path, line: int, entry: Any, key_lines: dict[str, int], problems: _Problems,
          seed: int) -> ManifestTask | None:
    """One manifest entry checked and read with its data file, or None after recording its problems."""
    where = f"{path}:{line}"
    if not isinstance(entry, dict):
        problems.add(where, f"a task is a mapping of {list(TASK_KEYS)}, got {type(entry).__name__}")
        return None
    before = len(problems)
    for key in sorted(set(entry) - set(TASK_KEYS)):
        problems.add(f"{path}:{key_lines.get(key, line)}", f"unknown key {key!r}; a task takes {list(TASK_KEYS)}")
    for key in ("name", "description", "data"):
        if not (isinstance(entry.get(key), str) and entry[key].strip()):
            problems.add(where, f"`{key}` is required and must be a non-empty string")
    for key in ("paraphrases", "heldout_paraphrases"):
        if key in entry and not _strings(entry[key]):
            problems.add(f"{path}:{key_lines.get(key, line)}", f"`{key}` must be a list of non-empty strings")
    if entry.get("split", "train") not in ("train", "heldout"):
        problems.add(f"{path}:{key_lines.get('split', line)}", f"split {entry['split']!r} is not train or heldout")
    if not isinstance(entry.get("family", ""), str):
        problems.add(f"{path}:{key_lines.get('family', line)}", "`family` must be a string")
    labels = entry.get("labels")
    labels_ok = labels is None or (_strings(labels) and 2 <= len(labels) <= NUM_SLOTS
                                   and len(set(labels)) == len(labels))
    if not labels_ok:
        problems.add(f"{path}:{key_lines.get('labels', line)}",
                     f"`labels` must list 2 to {NUM_SLOTS} distinct label names in label order")
    base_model = _base_model(path, entry, key_lines, problems)
    data_file = path.parent / entry["data"] if isinstance(entry.get("data"), str) and entry["data"].strip() else None
    if data_file is not None and not data_file.is_file():
        problems.add(f"{path}:{key_lines.get('data', line)}", f"data file {data_file} not found (paths are relative "
                                                              "to the manifest)")
        data_file = None
    if data_file is None:
        return None
    name = entry.get("name") if isinstance(entry.get("name"), str) else f"at line {line}"
    # The data file is checked even when the entry has problems, so one run reports them all.
    read = _read_data(data_file, name, labels, labels_ok, problems, seed)
    if read is None or len(problems) > before:
        return None
    kind, label_names, data = read
    ref = {"provider": STORED, "kind": kind, "source": path.name, **({"base_model": base_model} if base_model else {})}
    record = TaskRecord(name=name, description=entry["description"], labels=tuple(label_names),
                        paraphrases=tuple(entry.get("paraphrases", ())), family=entry.get("family", ""),
                        split=entry.get("split", "train"), data_ref=ref,
                        heldout_paraphrases=tuple(entry.get("heldout_paraphrases", ())))
    return ManifestTask(record=record, data=data, kind=kind)


def _base_model(path: Path, entry: dict, key_lines: dict[str, int], problems: _Problems) -> str | None:
    """The task's base model as a canonical id (a relative directory is taken relative to the manifest)."""
    name = entry.get("base_model")
    if name is None:
        return None
    where = f"{path}:{key_lines.get('base_model', 1)}"
    if not (isinstance(name, str) and name.strip()):
        problems.add(where, "`base_model` must be a packaged model's name or a transformers directory")
        return None
    local = path.parent / name
    try:
        return canonical_base_model_id(local if (local / "config.json").is_file() else name)
    except LoragenError as err:
        problems.add(where, str(err))
        return None


def _parse_line(data_file: Path, n: int, raw: str, problems: _Problems) -> _Example | None:
    where = f"{data_file}:{n}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        problems.add(where, f"not valid JSON ({err.msg})")
        return None
    if not isinstance(obj, dict):
        problems.add(where, f"an example is a JSON object, got {type(obj).__name__}")
        return None
    kinds = [k for k, keys in _KEYS.items() if set(keys) & set(obj)]
    if len(kinds) != 1:
        problems.add(where, 'an example is {"text", "label"} (classification) or {"input", "output"} (generation)'
                     + (", not both" if kinds else f", got keys {sorted(obj)}"))
        return None
    kind: Kind = kinds[0]
    src, tgt = _KEYS[kind]
    bad = len(problems)
    for key in sorted(set(obj) - {src, tgt, "split"}):
        problems.add(where, f"unknown key {key!r} in a {kind} example (keys: {src}, {tgt}, split)")
    if not (isinstance(obj.get(src), str) and obj[src].strip()):
        problems.add(where, f"`{src}` must be a non-empty string")
    target = obj.get(tgt)
    if kind == "generation" and not (isinstance(target, str) and target.strip()):
        problems.add(where, "`output` must be a non-empty string")
    if kind == "classification" and (isinstance(target, bool) or not isinstance(target, (int, str))):
        problems.add(where, f"`label` must be a label index or a label name, got {target!r}")
    if obj.get("split", "train") not in SPLITS:
        problems.add(where, f"split {obj['split']!r} is not one of {list(SPLITS)}")
    return _Example(n, kind, obj.get(src), target, obj.get("split")) if len(problems) == bad else None


def _read_data(data_file: Path, name: str, labels: Any, labels_ok: bool, problems: _Problems,
               seed: int) -> tuple[Kind, list[str], TaskData] | None:
    """A data file's kind, label names and split examples; None after recording its problems."""
    before = len(problems)
    examples = [ex for n, raw in enumerate(data_file.read_text().splitlines(), start=1) if raw.strip()
                if (ex := _parse_line(data_file, n, raw, problems)) is not None]
    if len(problems) > before:
        return None
    if not examples:
        problems.add(str(data_file), f"no examples for task {name!r} (an empty data file)")
        return None
    kinds = sorted({e.kind for e in examples})
    if len(kinds) > 1:
        first = {k: next(e.line for e in examples if e.kind == k) for k in kinds}
        problems.add(str(data_file), "mixes classification and generation examples (first of each at lines "
                                     f"{first}); one task's file holds one kind")
        return None
    kind: Kind = kinds[0]
    if kind == "generation":
        if labels is not None:
            problems.add(str(data_file), f"task {name!r} lists labels but its examples are input/output pairs "
                                         "(generation); drop `labels` or give text/label examples")
            return None
        names: list[str] = []
    elif not labels_ok:  # already reported; the examples' labels cannot be checked against them
        return None
    else:
        names = _label_names(data_file, name, labels, examples, problems)
        if names is None:
            return None
    return kind, names, _split(data_file, name, examples, problems, seed)


def _label_names(data_file: Path, name: str, labels: list[str] | None, examples: list[_Example],
                 problems: _Problems) -> list[str] | None:
    """The label names (given, or "0".."k-1" from integer labels); every example's label becomes its index."""
    before = len(problems)
    if labels is None:
        named = [e.line for e in examples if isinstance(e.target, str)]
        if named:
            problems.add(f"{data_file}:{named[0]}", f"classification task {name!r} has no `labels` but its examples "
                                                    "use label names; list the names in label order under `labels`")
            return None
        k = max(e.target for e in examples) + 1
        labels = [str(i) for i in range(max(k, 0))]
        if len(labels) < 2 or len(labels) > NUM_SLOTS:
            problems.add(str(data_file), f"classification task {name!r} has no `labels` and its integer labels "
                                         f"imply {len(labels)} label(s); a task has 2 to {NUM_SLOTS}: list them "
                                         "under `labels`")
            return None
    for e in examples:
        if isinstance(e.target, str):
            if e.target not in labels:
                problems.add(f"{data_file}:{e.line}", f"unknown label name {e.target!r} (labels: {labels})")
            else:
                e.target = labels.index(e.target)
        elif not 0 <= e.target < len(labels):
            problems.add(f"{data_file}:{e.line}", f"label {e.target} out of range for {len(labels)} labels "
                                                  f"(0..{len(labels) - 1})")
    return labels if len(problems) == before else None


def _split(data_file: Path, name: str, examples: list[_Example], problems: _Problems, seed: int) -> TaskData:
    """Examples by split: as their split keys say, else a seeded 80/10/10 split."""
    pairs = {s: [] for s in SPLITS}
    if any(e.split is not None for e in examples):
        missing = [e.line for e in examples if e.split is None]
        if missing:
            problems.add(f"{data_file}:{missing[0]}", f"{len(missing)} example(s) have no `split` while others do; "
                                                      "give every example a split or none")
        for e in examples:
            pairs[e.split or "train"].append((e.source, e.target))
        if not pairs["train"]:
            problems.add(str(data_file), f"task {name!r} has no train examples to learn from")
        return TaskData(**pairs)
    order = list(range(len(examples)))
    random.Random(f"{seed}:{name}").shuffle(order)
    n = len(order)
    n_val, n_test = (max(1, round(n * VAL_FRACTION)), max(1, round(n * TEST_FRACTION))) if n >= 5 else (0, 0)
    chosen = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return TaskData(**{s: [(examples[i].source, examples[i].target) for i in sorted(idx)]
                       for s, idx in chosen.items()})
