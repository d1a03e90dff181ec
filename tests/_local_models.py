"""Local base-model directories as a user has them: a tiny Llama (causal LM) with a real chat tokenizer, and a tiny
BERT encoder with the packaged MiniLM's tokenizer; random weights, built from configs (no download)."""

from __future__ import annotations

from pathlib import Path

from tests._models import tiny_llama, tiny_tokenizer

LLAMA_TARGETS = ("q_proj", "v_proj")
BERT_TARGETS = ("query", "value")


def save_llama(path: Path, seed: int = 0) -> Path:
    """A tiny Llama and its character-level ChatML tokenizer saved as one transformers directory."""
    path.mkdir(parents=True, exist_ok=True)
    tiny_llama(seed).save_pretrained(path)
    tiny_tokenizer(chat=True).save_pretrained(path)
    return path


def tiny_bert(seed: int = 0):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config).eval()


def save_bert(path: Path, seed: int = 0) -> Path:
    """A tiny BERT encoder with the packaged MiniLM's (BERT) tokenizer, saved as one transformers directory."""
    from loragen.bank.base_model import load_tokenizer

    path.mkdir(parents=True, exist_ok=True)
    tiny_bert(seed).save_pretrained(path)
    load_tokenizer().save_pretrained(path)
    return path
