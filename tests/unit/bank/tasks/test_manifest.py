"""A user's task manifest: YAML and JSONL, data files of either kind, deterministic splits, and every problem
reported at once with file:line."""

from __future__ import annotations

import json

import pytest

from loragen.bank.errors import ConfigError
from loragen.bank.tasks.manifest import load_manifest, task_kind
from tests.unit.bank._custom import fruit_vs_vehicles, shout, write_jsonl


def _yaml(path, body: str):
    path.write_text(body)
    return path


def test_yaml_manifest_reads_both_kinds_with_deterministic_splits(tmp_path):
    write_jsonl(tmp_path / "data" / "cls.jsonl", fruit_vs_vehicles(40, named=True))
    write_jsonl(tmp_path / "data" / "gen.jsonl", shout(1)[:4])  # fewer than 5 examples: all train
    manifest = _yaml(tmp_path / "tasks.yaml", """tasks:
  - name: fruit
    description: label 1 if the words name vehicles, 0 if fruit
    paraphrases: ["vehicles or fruit?"]
    heldout_paraphrases: ["is it a vehicle?"]
    labels: [fruit, vehicle]
    family: toy
    split: heldout
    data: data/cls.jsonl
  - name: shout
    description: the word in capitals
    data: data/gen.jsonl
""")
    cls, gen = load_manifest(manifest)
    assert cls.kind == "classification" and gen.kind == "generation"
    assert cls.record.labels == ("fruit", "vehicle") and cls.record.split == "heldout"
    assert cls.record.paraphrases == ("vehicles or fruit?",) and cls.record.family == "toy"
    assert cls.record.data_ref == {"provider": "bank", "kind": "classification", "source": "tasks.yaml"}
    assert (len(cls.data.train), len(cls.data.val), len(cls.data.test)) == (32, 4, 4)
    assert all(isinstance(y, int) and y in (0, 1) for _, y in cls.data.train + cls.data.val + cls.data.test)
    texts = [t for t, _ in cls.data.train + cls.data.val + cls.data.test]
    assert sorted(texts) == sorted(r["text"] for r in fruit_vs_vehicles(40))  # every example, once
    assert load_manifest(manifest)[0].data == cls.data  # seeded: the same split every time
    assert load_manifest(manifest, seed=1)[0].data != cls.data
    assert gen.record.labels == () and (len(gen.data.train), gen.data.val, gen.data.test) == (4, [], [])
    assert gen.data.train[0] == ("cat", "CAT")
    assert task_kind(cls.record) == "classification" and task_kind(gen.record) == "generation"


def test_small_data_files_still_get_one_val_and_one_test_example(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", fruit_vs_vehicles(5))
    manifest = _yaml(tmp_path / "t.yaml", "tasks:\n  - {name: a, description: d, labels: [x, y], data: d.jsonl}\n")
    data = load_manifest(manifest)[0].data
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 1)


def test_jsonl_manifest_with_explicit_splits_integer_labels_and_a_base_model(tmp_path, tiny_llama_dir):
    rows = [{**r, "split": s} for r, s in zip(fruit_vs_vehicles(6), ["train"] * 4 + ["val", "test"])]
    write_jsonl(tmp_path / "d.jsonl", rows)
    write_jsonl(tmp_path / "g.jsonl", shout(1))
    manifest = write_jsonl(tmp_path / "tasks.jsonl", [
        {"name": "ints", "description": "label by topic", "data": "d.jsonl"},
        {"name": "gen", "description": "capitals", "data": "g.jsonl", "base_model": str(tiny_llama_dir)},
        {"name": "packaged", "description": "capitals", "data": "g.jsonl", "base_model": "minilm"},
    ])
    ints, gen, packaged = load_manifest(manifest)
    assert ints.record.labels == ("0", "1")  # integer labels without names: "0".."k-1"
    assert [len(ints.data.train), len(ints.data.val), len(ints.data.test)] == [4, 1, 1]
    assert gen.record.data_ref["base_model"] == str(tiny_llama_dir.resolve())  # canonical: the absolute path
    assert packaged.record.data_ref["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_relative_base_model_is_relative_to_the_manifest(tmp_path, tiny_llama_dir, monkeypatch):
    import shutil

    shutil.copytree(tiny_llama_dir, tmp_path / "models" / "llama")
    write_jsonl(tmp_path / "g.jsonl", shout(1))
    manifest = _yaml(tmp_path / "t.yaml", "tasks:\n  - {name: g, description: d, data: g.jsonl, "
                                          "base_model: models/llama}\n")
    monkeypatch.chdir(tmp_path.parent)
    task = load_manifest(manifest)[0]
    assert task.record.data_ref["base_model"] == str((tmp_path / "models" / "llama").resolve())


def test_every_problem_is_reported_at_once_with_file_and_line(tmp_path):
    write_jsonl(tmp_path / "ok.jsonl", fruit_vs_vehicles(6))
    write_jsonl(tmp_path / "mixed.jsonl", [{"text": "a", "label": 0}, {"input": "b", "output": "c"}])
    write_jsonl(tmp_path / "range.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 5}])
    write_jsonl(tmp_path / "names.jsonl", [{"text": "a", "label": "fruit"}, {"text": "b", "label": "boat"}])
    write_jsonl(tmp_path / "nolabels.jsonl", [{"text": "a", "label": "fruit"}, {"text": "b", "label": "car"}])
    write_jsonl(tmp_path / "keys.jsonl", [{"text": "a", "label": 0, "weight": 2}, {"text": "b", "label": 1}])
    write_jsonl(tmp_path / "splits.jsonl", [{"text": "a", "label": 0, "split": "train"}, {"text": "b", "label": 1}])
    write_jsonl(tmp_path / "gen.jsonl", shout(1))
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "badjson.jsonl").write_text('{"text": "a", "label": 0}\n{not json\n')
    manifest = _yaml(tmp_path / "tasks.yaml", """tasks:
  - name: dup
    description: fine
    labels: [a, b]
    data: ok.jsonl
  - name: dup
    description: same name
    labels: [a, b]
    data: ok.jsonl
  - name: unknown-key
    description: d
    labels: [a, b]
    colour: blue
    data: ok.jsonl
  - {name: mixed, description: d, labels: [a, b], data: mixed.jsonl}
  - {name: range, description: d, labels: [a, b], data: range.jsonl}
  - {name: names, description: d, labels: [fruit, car], data: names.jsonl}
  - {name: nolabels, description: d, data: nolabels.jsonl}
  - {name: missing, description: d, labels: [a, b], data: nowhere.jsonl}
  - {name: empty, description: d, labels: [a, b], data: empty.jsonl}
  - {name: keys, description: d, labels: [a, b], data: keys.jsonl}
  - {name: splits, description: d, labels: [a, b], data: splits.jsonl}
  - {name: gen-with-labels, description: d, labels: [a, b], data: gen.jsonl}
  - {name: badjson, description: d, labels: [a, b], data: badjson.jsonl}
  - {name: nodesc, labels: [a, b], data: ok.jsonl, split: later}
""")
    with pytest.raises(ConfigError) as err:
        load_manifest(manifest)
    msg = str(err.value)
    m, d = str(manifest), str(tmp_path)
    expected = [
        f"{m}:6: duplicate task name 'dup' (first at {m}:2)",
        f"{m}:13: unknown key 'colour'",
        f"{d}/mixed.jsonl: mixes classification and generation examples",
        f"{d}/range.jsonl:2: label 5 out of range for 2 labels",
        f"{d}/names.jsonl:2: unknown label name 'boat'",
        f"{d}/nolabels.jsonl:1: classification task 'nolabels' has no `labels`",
        f"{m}:19: data file {d}/nowhere.jsonl not found",
        f"{d}/empty.jsonl: no examples for task 'empty'",
        f"{d}/keys.jsonl:1: unknown key 'weight'",
        f"{d}/splits.jsonl:2: 1 example(s) have no `split` while others do",
        f"{d}/gen.jsonl: task 'gen-with-labels' lists labels but its examples are input/output pairs",
        f"{d}/badjson.jsonl:2: not valid JSON",
        f"{m}:25: `description` is required",
        f"{m}:25: split 'later' is not train or heldout",
    ]
    missing = [e for e in expected if e not in msg]
    assert not missing, msg
    assert f"{len(expected)} problem(s)" in msg


@pytest.mark.parametrize("body,expected", [
    ("name: x\n", "expected a mapping with a `tasks:` list"),
    ("tasks: []\nbase: 1\n", "unknown top-level key 'base'"),
    ("tasks: []\n", "lists no tasks"),
    ("tasks: [\n", "not valid YAML"),
    ("tasks:\n  - {name: x, description: d, data: d.jsonl, labels: [only]}\n", "`labels` must list 2 to 8"),
    ("tasks:\n  - {name: x, description: d, data: d.jsonl, base_model: no/such/model}\n",
     "unknown base model 'no/such/model'"),
])
def test_manifest_level_problems(tmp_path, body, expected):
    write_jsonl(tmp_path / "d.jsonl", fruit_vs_vehicles(6))
    with pytest.raises(ConfigError, match=expected):
        load_manifest(_yaml(tmp_path / "t.yaml", body))


def test_unreadable_manifests_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no such task manifest"):
        load_manifest(tmp_path / "none.yaml")
    (tmp_path / "t.toml").write_text("")
    with pytest.raises(ConfigError, match="not .toml"):
        load_manifest(tmp_path / "t.toml")
    (tmp_path / "t.jsonl").write_text(json.dumps(["not", "a", "task"]) + "\n")
    with pytest.raises(ConfigError, match=r"t.jsonl:1: a task is a mapping"):
        load_manifest(tmp_path / "t.jsonl")
