from __future__ import annotations

import argparse

import numpy as np

from loragen.api.commands import train_meta
from loragen.meta.condition import SlotDescriptionEncoder


def _letters(texts):
    """A small deterministic text embedding: letter counts (26,), L2-normalised."""
    out = np.zeros((len(texts), 26), dtype=np.float32)
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_slot_encoder_tells_label_orders_apart():
    enc = SlotDescriptionEncoder(_letters, max_slots=3)
    a, b = enc(["label 0 if the text is Polish, label 1 if it is Czech",
                "label 0 if the text is Czech, label 1 if it is Polish"])
    assert a.shape == (26 * 4,)
    np.testing.assert_allclose(a[:26], b[:26], atol=1e-6)  # the whole-text block cannot tell them apart ...
    np.testing.assert_allclose(a[26:52], b[52:78], atol=1e-6)  # ... the slots can: they are swapped
    assert not np.allclose(a[26:52], b[26:52])
    assert np.all(a[78:] == 0)  # no label 2


def test_train_meta_parser_and_overrides():
    parser = argparse.ArgumentParser()
    train_meta.add_parser(parser.add_subparsers(dest="target"))
    args = parser.parse_args(["meta", "-o", "out", "--steps", "7", "--beta", "0.01", "--seed", "3"])
    config = train_meta.load_config(args)
    assert (config.train.steps, config.train.beta, config.train.seed) == (7, 0.01, 3)
    assert args.func is train_meta.run
