"""The CVAE learns from a user's own bank: generation tasks on a tiny Llama, classification tasks on a tiny BERT
(real DuckDB banks, stored tasks and examples, a few training steps), and refuses what it cannot learn clearly."""

from __future__ import annotations

import json

import pytest
import torch

from loragen.api.cli import main
from loragen.bank.base_model import load_base_model
from loragen.bank.errors import ConfigError
from loragen.bank.lora.functional import lora_applied
from loragen.bank.store import Bank
from loragen.bank.tasks import BankSource
from loragen.hypernet.generate import CVAEGenerator
from loragen.hypernet.layout import AdapterLayout
from loragen.hypernet.train import snapshot, train_hypernet
from tests._models import random_adapter
from tests.unit.hypernet.conftest import tiny_config
from tests.unit.meta._user_banks import (
    LLAMA_TARGETS,
    bert_dir,
    classification_bank,
    generation_bank,
    llama_dir,
)

STEPS = {"max_steps": 3, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return llama_dir(tmp_path_factory.mktemp("user-llama"))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return bert_dir(tmp_path_factory.mktemp("user-bert"))


def _train(bank_path, encode, out, **kwargs):
    config = tiny_config()
    with Bank.open(bank_path) as bank:
        source = snapshot(BankSource(bank), config)
    return train_hypernet(source, config, out, trainer_kwargs=STEPS, encode=encode, **kwargs)


@pytest.fixture(scope="module")
def generation_ckpt(llama, encode, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    with Bank.open(root / "bank.duckdb") as bank:
        generation_bank(bank, llama)
    path, module, _ = _train(root / "bank.duckdb", encode, root / "ckpt")
    return path, module


@pytest.fixture(scope="module")
def classification_ckpt(bert, encode, tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    with Bank.open(root / "bank.duckdb") as bank:
        classification_bank(bank, bert)
    path, _, _ = _train(root / "bank.duckdb", encode, root / "ckpt")
    return path


def _fits(adapter, model_dir) -> None:
    model = load_base_model(model_dir)
    named = dict(model.named_modules())
    for m, a, b in adapter.items():
        assert (b.shape[0], a.shape[1]) == tuple(named[m].weight.shape)
    with lora_applied(model, adapter):  # runs with the adapter applied
        model(input_ids=torch.tensor([[5, 6, 7]]))


def _flat(adapter) -> torch.Tensor:
    return torch.cat([adapter.delta_weight(m).flatten() for m in adapter.modules])


def test_generation_tasks_without_labels_train_and_condition_on_free_text(generation_ckpt, llama, encode):
    path, module = generation_ckpt
    extra = json.loads((path / "config.json").read_text())["extra"]
    assert extra["task_kinds"] == ["generation"] and extra["channels"] == {"labels": False, "examples": False}
    gen = CVAEGenerator.from_checkpoint(path, encode=encode)
    [a] = gen.generate("Translate the input into French.")
    [b] = gen.generate("Count the vowels of the input.")
    _fits(a, llama)
    assert a.base_model == str(llama.resolve())
    cos = float(torch.nn.functional.cosine_similarity(_flat(a), _flat(b), dim=0))
    assert cos < 0.999  # the description is read: different tasks, different adapters


def test_free_text_keeps_its_description_token_in_training(generation_ckpt):
    _, module = generation_ckpt
    dm_items = module.trainer.datamodule.train_set
    for epoch in range(3):
        dm_items.epoch = epoch
        for i in range(len(dm_items)):
            _, _, cond = dm_items[i]
            assert cond.n_slots == 0 and not cond.present.any() and cond.glob.abs().sum() > 0


def test_channels_the_checkpoint_never_fitted_are_refused(generation_ckpt, encode):
    gen = CVAEGenerator.from_checkpoint(generation_ckpt[0], encode=encode)
    with pytest.raises(ConfigError, match="trained without labelled examples: drop --examples"):
        gen.generate("Translate the input into French.", examples=[("x", 0), ("y", 1)])
    with pytest.raises(ConfigError, match="without label names"):
        gen.generate("Translate the input into French.", labels=["short", "long"])
    with pytest.raises(ConfigError, match="a generation task .* takes none, so leave --labels out"):
        gen.generate("Translate the input into French.", labels=["French"])


def test_classification_tasks_with_and_without_label_clauses(classification_ckpt, bert, encode):
    gen = CVAEGenerator.from_checkpoint(classification_ckpt, encode=encode)
    assert gen.channels == {"labels": True, "examples": True}
    [plain] = gen.generate("Tell fruit from tools.")
    [named] = gen.generate("Tell fruit from tools.", labels=["fruit", "tool"],
                           examples=[("fig jam", 0), ("saw pen", 1)])
    _fits(plain, bert)
    _fits(named, bert)
    assert float(torch.nn.functional.cosine_similarity(_flat(plain), _flat(named), dim=0)) < 0.9999


def test_a_bank_without_adapters_names_what_to_run(llama, encode, tmp_path, capsys):
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        generation_bank(bank, llama, adapters=dict.fromkeys(["user/upper", "user/reverse", "user/first",
                                                             "user/double", "user/legal"]))
    with pytest.raises(ConfigError, match=r"loragen bank tasks import MANIFEST.*loragen bank train.*--kind final"):
        _train(tmp_path / "bank.duckdb", encode, tmp_path / "ckpt")
    code = main(["train", "hypernet", "--bank", str(tmp_path / "bank.duckdb"), "-o", str(tmp_path / "c"),
                 "--max-steps", "1", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar",
                 "--skip-mismatched"])
    err = capsys.readouterr().err
    assert code == 1 and "loragen bank train" in err and "internal error" not in err


def test_mixed_target_modules_are_refused_by_name_or_skipped_and_mixed_ranks_train(llama, encode, tmp_path):
    model = load_base_model(llama)
    base = str(llama.resolve())
    odd = random_adapter(model, ("q_proj",), seed=5, base_model=base)
    low_rank = random_adapter(model, LLAMA_TARGETS, r=2, seed=6, base_model=base)
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        generation_bank(bank, llama, adapters={"user/first": odd, "user/double": low_rank})
    with pytest.raises(ConfigError, match=r"1 of the bank's 5 adapters.*majority layout.*'q_proj', 'v_proj'.*"
                                          r"user/first.*--skip-mismatched"):
        _train(tmp_path / "bank.duckdb", encode, tmp_path / "ckpt")
    path, module, _ = _train(tmp_path / "bank.duckdb", encode, tmp_path / "ckpt", skip_mismatched=True)
    extra = json.loads((path / "config.json").read_text())["extra"]
    assert extra["n_train_adapters"] == 4 and module.layout.r == 4  # the r=2 adapter is padded, not dropped


def test_lower_rank_adapters_are_zero_padded_exactly(llama):
    model = load_base_model(llama)
    base = str(llama.resolve())
    r4, r2 = (random_adapter(model, LLAMA_TARGETS, r=r, seed=r, base_model=base) for r in (4, 2))
    layout = AdapterLayout.of(r4)
    back = layout.to_adapter(layout.to_tokens(r2))
    for m in r2.modules:
        torch.testing.assert_close(back.delta_weight(m), r2.delta_weight(m), rtol=1e-4, atol=1e-6)


def test_a_checkpoint_without_the_record_is_read_from_its_weights(generation_ckpt, encode, tmp_path):
    """Checkpoints written before the channels were recorded: the unfitted examples maps give it away."""
    import shutil

    path = shutil.copytree(generation_ckpt[0], tmp_path / "old")
    meta = json.loads((path / "config.json").read_text())
    del meta["extra"]["channels"], meta["extra"]["task_kinds"]
    (path / "config.json").write_text(json.dumps(meta))
    gen = CVAEGenerator.from_checkpoint(path, encode=encode)
    assert gen.channels["examples"] is False
    with pytest.raises(ConfigError, match="without labelled examples"):
        gen.generate("Translate the input into French.", examples=[("x", 0), ("y", 1)])
