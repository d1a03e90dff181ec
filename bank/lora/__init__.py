"""The adapter core: one definition of a LoRA adapter, its PEFT format, canonical form, merging and saving a merged
model."""

from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.canonical import canonicalize, is_canonical
from loragen.bank.lora.layers import target_weights
from loragen.bank.lora.merge import MergeHandle, combine, merge
from loragen.bank.lora.merged_model import save_merged_model
from loragen.bank.lora.peft_format import load_peft, peft_config, save_peft

__all__ = [
    "LoraAdapter",
    "MergeHandle",
    "canonicalize",
    "combine",
    "is_canonical",
    "load_peft",
    "merge",
    "peft_config",
    "save_merged_model",
    "save_peft",
    "target_weights",
]
