"""Generative tasks on a causal LM: one prompt format, output-token targets, greedy completion and the metrics.

A generative example is ``{"input": ..., "output": ...}``. The adapter alone carries the task, so the prompt holds
the input and nothing else: the tokenizer's chat template with the input as the user message and an *empty*
system message (SmolLM2's template otherwise inserts a 20-token default system prompt), or, for a tokenizer
without a chat template, the fixed template ``"Input: {input}\\nOutput: "``. The "base + description" baseline
(Text-to-LoRA's) puts the task description in the system message instead. Training loss and log-likelihood count
the output tokens (and the end-of-sequence token) only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

PLAIN_TEMPLATE = "Input: {input}\nOutput: "
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: prompt + output ids, and labels that are IGNORE_INDEX on the prompt."""

    input_ids: list[int]
    labels: list[int]


def prompt_ids(tokenizer, text: str, system: str | None = None) -> list[int]:
    """Token ids of the prompt for one input (generation starts right after them).

    Args:
        tokenizer: the base model's tokenizer.
        text: the task input (the user message).
        system: the system message; None or "" leaves it empty (the adapter carries the task).
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system or ""}, {"role": "user", "content": text}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # transformers may return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)
    prefix = f"{system}\n" if system else ""
    ids = tokenizer(prefix + PLAIN_TEMPLATE.format(input=text), add_special_tokens=True)["input_ids"]
    return list(ids)


def encode_example(tokenizer, text: str, output: str, system: str | None = None, max_length: int = 128) -> Encoded:
    """Prompt + output + end-of-sequence, with the loss on the output part only (truncated to `max_length`)."""
    prompt = prompt_ids(tokenizer, text, system)
    target = list(tokenizer(output, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        target.append(tokenizer.eos_token_id)
    ids = (prompt + target)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt) + target)[:max_length]
    return Encoded(ids, labels)


def pad_id(tokenizer) -> int:
    """The padding id: the tokenizer's pad token, else its end-of-sequence token, else 0."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def collate(batch: Sequence[Encoded], pad: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: input_ids (B, T), attention_mask (B, T), labels (B, T) with IGNORE_INDEX on padding."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_logprobs(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of each target token and the target mask, both (B, T-1) (next-token shifted)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()  # (B, T-1, V): position t predicts token t+1
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def output_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood per output token over the batch (the oracle training loss)."""
    logp, mask = token_logprobs(model, batch)
    return -logp.sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def mean_loglik(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], system: str | None = None,
                batch_size: int = 16, max_length: int = 128) -> list[float]:
    """Per example: the mean log-likelihood per token of the reference output given the prompt."""
    out: list[float] = []
    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        chunk = [encode_example(tokenizer, x, y, system, max_length) for x, y in pairs[start:start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk, pad).items()}
        logp, mask = token_logprobs(model, batch)
        out.extend((logp.sum(1) / mask.sum(1).clamp_min(1)).tolist())
    return out


@torch.no_grad()
def output_token_probs(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], system: str | None = None,
                       batch_size: int = 16, max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The next-token distribution at every reference-output position (teacher forcing), and the reference token.

    Returns:
        (N, V) probabilities and (N,) token ids, N the output tokens (with end-of-sequence) of all pairs in order.
    """
    probs, targets = [], []
    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        chunk = [encode_example(tokenizer, x, y, system, max_length) for x, y in pairs[start:start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk, pad).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        shifted = batch["labels"][:, 1:]
        mask = shifted != IGNORE_INDEX
        probs.append(torch.softmax(logits[mask].float(), dim=-1).cpu())
        targets.append(shifted[mask].cpu())
    return torch.cat(probs), torch.cat(targets)


@torch.no_grad()
def complete(model: nn.Module, tokenizer, texts: Sequence[str], system: str | None = None,
             max_new_tokens: int = 16, batch_size: int = 16) -> list[str]:
    """Greedy completions, one per input (left-padded batches; the prompt as `prompt_ids` builds it)."""
    pad = pad_id(tokenizer)
    device = next(model.parameters()).device
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        prompts = [prompt_ids(tokenizer, t, system) for t in texts[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        out.extend(tokenizer.decode(row[width:], skip_special_tokens=True) for row in gen)
    return out


def complete_like(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int = 128) -> list[str]:
    """Greedy completions of the pairs' inputs, as long as the longest reference output plus 2 tokens (at most
    `max_length`): what exact match compares with the references."""
    longest = max(len(tokenizer(y, add_special_tokens=False)["input_ids"]) for _, y in pairs)
    return complete(model, tokenizer, [x for x, _ in pairs], max_new_tokens=min(longest + 2, max_length))


def normalize(text: str) -> str:
    """What exact match compares: the first non-empty line, stripped, case-folded."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0].casefold() if lines else ""


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions whose first line equals the reference's, ignoring case and surrounding space."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        return 0.0
    return sum(normalize(p) == normalize(r) for p, r in zip(predictions, references)) / len(references)
