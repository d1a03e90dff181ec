"""Users' own banks for the generators' tests: real DuckDB banks of stored tasks, their examples and adapters.

    generation bank       a tiny random Llama (saved with a character-level chat tokenizer), generation tasks
                          (labels == (), (input, output) pairs), adapters on q_proj/v_proj
    classification bank   a tiny random BERT (saved with the packaged MiniLM tokenizer), classification tasks with
                          and without label clauses in their descriptions, adapters on query/value

Built with `Bank.add_tasks` + `Bank.set_task_data` + `Bank.add(..., kind="final")`, as `loragen bank tasks import`
and `loragen bank train` would leave them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch

from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import STORED
from tests._models import random_adapter, tiny_llama, tiny_tokenizer

LLAMA_TARGETS = ("q_proj", "v_proj")
BERT_TARGETS = ("query", "value")
WORDS = ["cat", "dog", "sun", "map", "red", "box", "pen", "cup", "fig", "owl", "jam", "hat"]

# name -> (description, input -> output)
GENERATION: dict[str, tuple[str, Callable[[str], str]]] = {
    "user/upper": ("Rewrite the input in upper case.", str.upper),
    "user/reverse": ("Reverse the characters of the input.", lambda x: x[::-1]),
    "user/first": ("Give only the first word of the input.", lambda x: x.split()[0]),
    "user/double": ("Repeat the input twice.", lambda x: f"{x} {x}"),
    "user/legal": ("summarise legal text in 3 sentences", lambda x: x.split()[-1]),
}
# name -> (description, label names, words of each label)
CLASSIFICATION: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "user/animals": ("Tell animals from food.", ("animal", "food"), (("cat", "dog", "owl"), ("fig", "jam", "cup"))),
    "user/colours": ("label 0 if the text names a colour, label 1 if it names a tool",
                     ("colour", "tool"), (("red", "blue", "green"), ("saw", "pen", "axe"))),
    "user/sky": ("Is the word about the sky (0) or the ground (1)?", ("sky", "ground"),
                 (("sun", "moon", "star"), ("rock", "mud", "sand"))),
    "user/size": ("Decide whether a thing is big or small.", ("big", "small"),
                  (("whale", "house", "tree"), ("ant", "pin", "seed"))),
}


def llama_dir(path: Path) -> Path:
    """A tiny Llama with its tokenizer as a local transformers directory."""
    tiny_llama().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def bert_dir(path: Path) -> Path:
    """A tiny random BERT encoder with the packaged MiniLM tokenizer as a local transformers directory."""
    from transformers import BertConfig, BertModel

    from loragen.bank.base_model import load_tokenizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    load_tokenizer().save_pretrained(path)
    return path


def generation_data(name: str, n: int, seed: int) -> list[tuple[str, str]]:
    rng, fn = random.Random(f"{name}-{seed}"), GENERATION[name][1]
    inputs = [" ".join(rng.sample(WORDS, 2)) for _ in range(n)]
    return [(x, fn(x)) for x in inputs]


def classification_data(name: str, n: int, seed: int) -> list[tuple[str, int]]:
    rng, groups = random.Random(f"{name}-{seed}"), CLASSIFICATION[name][2]
    return [(" ".join(rng.choices(groups[i % 2], k=2)), i % 2) for i in range(n)]


def stored_task(name: str, description: str, labels: tuple[str, ...] = ()) -> TaskRecord:
    return TaskRecord(name=name, description=description, labels=labels, family="user",
                      data_ref={"provider": STORED})


def generation_bank(bank, model_dir: Path, adapters: dict[str, LoraAdapter] | None = None,
                    with_data: bool = True) -> None:
    """Fill `bank` with the generation tasks, their data and one final adapter each (`adapters` replace the random
    ones by task name; a task mapped to None gets none)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    base = canonical_base_model_id(model_dir)
    bank.add_tasks([stored_task(name, text) for name, (text, _) in GENERATION.items()])
    for i, name in enumerate(GENERATION):
        if with_data:
            bank.set_task_data(name, generation_data(name, 12, 0), generation_data(name, 4, 1),
                               generation_data(name, 4, 2))
        adapter = (adapters or {}).get(name, random_adapter(model, LLAMA_TARGETS, seed=i, base_model=base))
        if adapter is not None:
            bank.add(adapter, task=name, kind="final", source="test")


def classification_bank(bank, model_dir: Path) -> None:
    """Fill `bank` with the classification tasks, their data and one final adapter each."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir)
    base = canonical_base_model_id(model_dir)
    bank.add_tasks([stored_task(name, text, labels) for name, (text, labels, _) in CLASSIFICATION.items()])
    for i, name in enumerate(CLASSIFICATION):
        bank.set_task_data(name, classification_data(name, 12, 0), classification_data(name, 4, 1),
                           classification_data(name, 4, 2))
        bank.add(random_adapter(model, BERT_TARGETS, seed=10 + i, base_model=base), task=name, kind="final",
                 source="test")


def train_oracle(model_dir: Path, pairs: list[tuple[str, str]], steps: int = 60, seed: int = 0) -> LoraAdapter:
    """A LoRA adapter (q_proj/v_proj, r=4) fitted on `pairs` by Adam on the output tokens' loss."""
    from loragen.bank.base_model import load_base_model, load_tokenizer
    from loragen.bank.causal_lm import collate, encode_example, output_loss, pad_id
    from loragen.bank.lora.functional import lora_applied

    model, tok = load_base_model(model_dir), load_tokenizer(model_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    init = random_adapter(model, LLAMA_TARGETS, seed=seed, scale=0.05, base_model=canonical_base_model_id(model_dir))
    factors = {m: (a.clone().requires_grad_(True), torch.zeros_like(b).requires_grad_(True))
               for m, a, b in init.items()}
    opt = torch.optim.Adam([t for pair in factors.values() for t in pair], lr=2e-2)
    batch = collate([encode_example(tok, x, y) for x, y in pairs], pad_id(tok))
    for _ in range(steps):
        with lora_applied(model, factors, init.scaling):
            loss = output_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return LoraAdapter(base_model=init.base_model, r=init.r, lora_alpha=init.lora_alpha,
                       lora_A={m: a.detach() for m, (a, _) in factors.items()},
                       lora_B={m: b.detach() for m, (_, b) in factors.items()})
