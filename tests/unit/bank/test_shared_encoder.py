"""Every name of one text-encoder model gets the same shared encoder: the bank (which names the model it recorded)
and the hypernetwork (which names none) share one model and one cache of description embeddings."""

from __future__ import annotations

from loragen.bank.base_model import DEFAULT_BASE_MODEL, resolve_base_model
from loragen.bank.embed import default_encoder


def test_none_the_hub_id_and_the_directory_share_one_encoder():
    shared = default_encoder()
    assert default_encoder(None) is shared
    assert default_encoder(DEFAULT_BASE_MODEL) is shared
    assert default_encoder(str(resolve_base_model(None))) is shared
    assert shared.name == DEFAULT_BASE_MODEL
