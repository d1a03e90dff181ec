"""The adapter core: one definition of a LoRA adapter, its PEFT format, canonical form and merging."""

from bank.lora.adapter import LoraAdapter
from bank.lora.canonical import canonicalize, is_canonical
from bank.lora.layers import target_weights
from bank.lora.merge import MergeHandle, combine, merge
from bank.lora.peft_format import load_peft, peft_config, save_peft

__all__ = [
    "LoraAdapter",
    "MergeHandle",
    "canonicalize",
    "combine",
    "is_canonical",
    "load_peft",
    "merge",
    "peft_config",
    "save_peft",
    "target_weights",
]
