"""loragen's exception types: one hierarchy, so the CLI and the HTTP API can map them in one place.

Every error says what came in, what was expected, and what to do about it.
"""

from __future__ import annotations


class LoragenError(Exception):
    """Base class of every error loragen raises on purpose."""


class ConfigError(LoragenError, ValueError):
    """A config, request or setting has bad values; the message lists every problem found, field by field."""


class AdapterFormatError(LoragenError, ValueError):
    """An adapter directory or file is not a valid PEFT LoRA adapter (missing files, pickles, bad config)."""


class AdapterShapeError(LoragenError, ValueError):
    """An adapter's tensors do not fit its own config or the base model it is applied to."""


class UnknownBaseModelError(LoragenError, ValueError):
    """A base model name is neither a packaged model nor a local transformers directory."""


class NonFiniteError(LoragenError, ValueError):
    """A tensor holds NaN or Inf where finite values are required."""


class TaskDataError(LoragenError, ValueError):
    """A task's data cannot be had: its record names no task provider, an unknown one, or data its provider lacks."""


class BankError(LoragenError):
    """A problem with the bank itself (store, index, schema)."""


class NotFoundError(BankError, KeyError):
    """An adapter or task id is not in the bank."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DuplicateAdapterError(BankError, ValueError):
    """An adapter with the same tensor checksum is already in the bank."""


class ChecksumError(BankError):
    """Stored tensors do not match their recorded sha256."""


class IndexCorruptError(BankError):
    """A persisted search index is missing or does not match its recorded checksum (the bank rebuilds it)."""


class CheckpointError(LoragenError, ValueError):
    """A generator checkpoint is missing, unreadable, pickled, or made for another base model / target layout."""
