"""Tiny models built from configs with random weights (no download) and random adapters for them."""

from __future__ import annotations

import torch
from torch import nn

from loragen.bank.lora import LoraAdapter


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(config).eval()


def minilm():
    from loragen.bank.base_model import load_base_model

    return load_base_model()


def random_adapter(
    model: nn.Module,
    targets: tuple[str, ...],
    r: int = 4,
    alpha: float = 8.0,
    seed: int = 0,
    scale: float = 0.1,
    base_model: str = "tiny",
    layers: tuple[int, ...] | None = None,
) -> LoraAdapter:
    """Random LoRA factors on `targets` (in the blocks `layers` only, when given)."""
    from loragen.bank.train.lora_module import layer_index

    g = torch.Generator().manual_seed(seed)
    lora_A, lora_B = {}, {}
    fan_in_fan_out = False
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in targets or (layers is not None and layer_index(name) not in layers):
            continue
        w = module.weight
        if isinstance(module, nn.Linear):
            out_f, in_f = w.shape
        else:  # GPT-2 Conv1D stores (in, out)
            in_f, out_f = w.shape
            fan_in_fan_out = True
        lora_A[name] = torch.randn(r, in_f, generator=g) * scale
        lora_B[name] = torch.randn(out_f, r, generator=g) * scale
    return LoraAdapter(
        base_model=base_model,
        r=r,
        lora_alpha=alpha,
        lora_A=lora_A,
        lora_B=lora_B,
        fan_in_fan_out=fan_in_fan_out,
    )


CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")


def tiny_tokenizer(chat: bool = True):
    """A real character-level fast tokenizer (ASCII + newline + specials, 102 ids < tiny_llama's 128), built
    offline; with `chat` it carries a ChatML template like SmolLM2's."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", additional_special_tokens=list(SPECIAL_TOKENS[4:]))
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok
