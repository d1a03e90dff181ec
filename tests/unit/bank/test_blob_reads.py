"""Reading an adapter's BLOBs in one range query and writing them in one INSERT: each adapter gets exactly its own
tensors back, canonical or original, whatever its neighbours hold; a missing BLOB is still reported."""

from __future__ import annotations

import pytest
import torch

from loragen.bank.embed import default_encoder
from loragen.bank.errors import ChecksumError
from loragen.bank.lora.canonical import canonicalize
from loragen.bank.store import Bank
from tests.unit.bank._bank_util import minilm_adapter


@pytest.fixture(scope="module")
def encoder():
    return default_encoder()


def _same(a, b) -> None:
    assert a.modules == b.modules
    for (m, a1, b1), (_, a2, b2) in zip(a.items(), b.items()):
        assert torch.equal(a1, a2) and torch.equal(b1, b2), m


def test_neighbouring_adapters_read_back_their_own_tensors(tmp_path, encoder):
    adapters = [minilm_adapter(seed=1, layers=(0,)), minilm_adapter(seed=2, layers=(0, 1, 2), r=2),
                minilm_adapter(seed=3, layers=(1,), targets=("query",))]
    with Bank.open(tmp_path / "bank.duckdb", encoder=encoder) as bank:
        ids = [bank.add(a, description=f"adapter {i}", keep_original=i == 1) for i, a in enumerate(adapters)]
        for adapter_id, adapter in zip(ids, adapters):
            _same(bank.get(adapter_id), canonicalize(adapter))
        _same(bank.get(ids[1], original=True), adapters[1])
        blob = bank._cur().execute("SELECT max(blob_id) FROM tensors WHERE adapter_id = ? AND variant = 'canonical'",
                                   [ids[1]]).fetchone()[0]
        bank._cur().execute("DELETE FROM tensors WHERE blob_id = ?", [blob])
        with pytest.raises(ChecksumError, match=f"{ids[1]}.*some are missing"):
            bank.get(ids[1])
        _same(bank.get(ids[1], original=True), adapters[1])  # the next BLOBs (its original) are not taken instead
        _same(bank.get(ids[2]), canonicalize(adapters[2]))
