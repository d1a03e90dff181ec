"""Which adapter layout a bank trains the hypernetwork for, and which of its adapters fit it.

A CVAE generates one fixed layout (base model, adapted modules and their shapes). A user's bank may hold adapters
of several ranks and several target-module sets. Ranks are no obstacle: canonical factors of a lower-rank adapter
are zero-padded to the layout's rank (the layout takes the largest rank, so no adapter is truncated and every ΔW is
kept exactly). Other modules, shapes or base models are: training refuses them with one message that names the
odd adapters and the majority layout, or skips them when asked (`skip_mismatched`, `--skip-mismatched`).

Usage::

    layout, skipped = choose_layout({"t1": [(adapter, "final")], ...}, skip_mismatched=True)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence

from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.hypernet.layout import AdapterLayout

log = logging.getLogger(__name__)

Key = tuple[str, tuple[str, ...], tuple[tuple[int, int], ...], bool]
NO_ADAPTERS = ("the bank has no in-bank (split 'train') task with an adapter to train on. Give its tasks adapters: "
               "import tasks with their data and train their oracles (`loragen bank tasks import MANIFEST`, then "
               "`loragen bank train`), or import finished adapters (`loragen bank import DIR --kind final --task "
               "NAME`); the built-in suite's bank comes from `loragen bank build`")


def layout_key(adapter: LoraAdapter) -> Key:
    """What must agree between adapters a CVAE learns from: base model, modules, shapes, fan_in_fan_out."""
    layout = AdapterLayout.of(adapter)
    return layout.base_model, layout.modules, layout.shapes, layout.fan_in_fan_out


def describe_key(key: Key) -> str:
    """A layout key in words: base model, target module names and module count."""
    base, modules, _, _ = key
    targets = sorted({m.rsplit(".", 1)[-1] for m in modules})
    return f"base model {base!r}, {len(modules)} modules targeting {targets}"


def _name(task: str, kind: str, adapter: LoraAdapter) -> str:
    ident = adapter.metadata.get("id")
    return f"{task} ({kind}{', ' + str(ident)[:12] if ident else ''})"


def choose_layout(adapters: Mapping[str, Sequence[tuple[LoraAdapter, str]]], skip_mismatched: bool = False
                  ) -> tuple[AdapterLayout, set[int]]:
    """The majority layout of the adapters (by final adapters, then all), at the largest rank among them.

    Args:
        adapters: task name -> its (adapter, kind) pairs, tasks in training order.
        skip_mismatched: leave adapters of another layout out (logged) instead of refusing.

    Returns:
        (the layout, `id()` of every adapter left out).

    Raises:
        ConfigError: no adapters at all, or adapters of several layouts without `skip_mismatched`.
    """
    keys = {id(a): layout_key(a) for pairs in adapters.values() for a, _ in pairs}
    if not keys:
        raise ConfigError(NO_ADAPTERS)
    finals = Counter(keys[id(a)] for pairs in adapters.values() for a, kind in pairs if kind == "final")
    every = Counter(keys.values())
    order = list(dict.fromkeys(keys.values()))  # first seen wins a tie
    best = max(order, key=lambda k: (finals[k], every[k], -order.index(k)))
    odd = [(task, kind, a) for task, pairs in adapters.items() for a, kind in pairs if keys[id(a)] != best]
    if odd:
        names = [_name(t, k, a) + f": {describe_key(keys[id(a)])}" for t, k, a in odd]
        shown = "; ".join(names[:6]) + (f"; and {len(names) - 6} more" if len(names) > 6 else "")
        message = (f"{len(odd)} of the bank's {len(keys)} adapters do not share the majority layout "
                   f"({describe_key(best)}): {shown}")
        if not skip_mismatched:
            raise ConfigError(message + ". A hypernetwork generates one layout: pass --skip-mismatched "
                              "(skip_mismatched=True) to train on the majority layout only, or remove those adapters")
        log.warning("%s; skipping them (--skip-mismatched)", message)
    rank = max(a.r for pairs in adapters.values() for a, _ in pairs if keys[id(a)] == best)
    first = next(a for pairs in adapters.values() for a, _ in pairs if keys[id(a)] == best)
    layout = AdapterLayout.of(first)
    if rank != layout.r:
        log.info("adapters of ranks up to %d: the layout takes rank %d (lower ranks are zero-padded)", rank, rank)
        layout = AdapterLayout(layout.base_model, rank, layout.modules, layout.shapes, layout.target_modules,
                               layout.fan_in_fan_out)
    return layout, {id(a) for _, _, a in odd}
