"""Generative-task primitives on a tiny random Llama with a real (character-level) tokenizer."""

from __future__ import annotations

import pytest
import torch

from loragen.bank.causal_lm import (
    IGNORE_INDEX,
    collate,
    complete,
    encode_example,
    exact_match,
    mean_loglik,
    output_loss,
    pad_id,
    prompt_ids,
)
from tests._models import tiny_llama, tiny_tokenizer


@pytest.mark.parametrize("chat", [True, False])
def test_prompt_holds_the_input_only_and_labels_cover_the_output(chat):
    tok = tiny_tokenizer(chat=chat)
    enc = encode_example(tok, "abc", "cba")
    prompt = prompt_ids(tok, "abc")
    assert enc.input_ids[: len(prompt)] == prompt
    assert enc.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert tok.decode(enc.labels[len(prompt):], skip_special_tokens=True) == "cba"
    assert enc.labels[-1] == tok.eos_token_id
    text = tok.decode(prompt)
    assert "abc" in text and ("<|im_start|>system\n<|im_end|>" in text) == chat


def test_system_message_goes_into_the_prompt():
    tok = tiny_tokenizer()
    assert "reverse it" in tok.decode(prompt_ids(tok, "abc", system="reverse it"))
    assert "reverse it" in tiny_tokenizer(chat=False).decode(prompt_ids(tiny_tokenizer(chat=False), "x", "reverse it"))


def test_loss_ignores_prompt_and_padding():
    tok, model = tiny_tokenizer(), tiny_llama()
    a, b = encode_example(tok, "abc", "cba"), encode_example(tok, "hello there", "x")
    batch = collate([a, b], pad_id(tok))
    assert batch["input_ids"].shape == (2, max(len(a.input_ids), len(b.input_ids)))
    assert (batch["labels"][1, len(b.input_ids):] == IGNORE_INDEX).all()
    joint = output_loss(model, batch)
    # Per-token mean over both examples equals the token-weighted mean of each alone.
    la, lb = output_loss(model, collate([a], 0)), output_loss(model, collate([b], 0))
    na, nb = sum(x != IGNORE_INDEX for x in a.labels), sum(x != IGNORE_INDEX for x in b.labels)
    torch.testing.assert_close(joint, (la * na + lb * nb) / (na + nb), rtol=1e-4, atol=1e-5)


def test_mean_loglik_is_batch_invariant_and_negative():
    tok, model = tiny_tokenizer(), tiny_llama()
    pairs = [("abc", "cba"), ("hello", "olleh"), ("x", "x")]
    one = mean_loglik(model, tok, pairs, batch_size=1)
    many = mean_loglik(model, tok, pairs, batch_size=3)
    assert one == pytest.approx(many, abs=1e-4)
    assert all(v < 0 for v in one)


def test_greedy_completion_is_batch_invariant_and_learns_an_output():
    tok, model = tiny_tokenizer(), tiny_llama()
    texts = ["abc", "a much longer input"]
    assert complete(model, tok, texts, max_new_tokens=4, batch_size=1) == \
        complete(model, tok, texts, max_new_tokens=4, batch_size=2)
    # A few steps of full fine-tuning on one pair make greedy decoding produce it: the loss targets are right.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate([encode_example(tok, "abc", "ok")], pad_id(tok))
    model.train()
    for _ in range(60):
        opt.zero_grad()
        output_loss(model, batch).backward()
        opt.step()
    model.eval()
    assert complete(model, tok, ["abc"], max_new_tokens=4) == ["ok"]


def test_exact_match_compares_the_first_line_case_insensitively():
    assert exact_match(["  March 5, 2024\nmore", "no"], ["march 5, 2024", "yes"]) == 0.5
    with pytest.raises(ValueError):
        exact_match(["a"], [])
