"""Integer codes for shipped checkpoints (`bank._codes`): exact round trip of the stored codes, errors that match
what `row_errors` predicts, budgets respected by `allocate`, and damaged codes refused."""

from __future__ import annotations

import pytest
import torch

from loragen.bank import _checkpoint as files
from loragen.bank import _codes as C
from loragen.bank.errors import CheckpointError


def _rows(n: int = 6, cols: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, cols, generator=g) * torch.logspace(0, -2, n)[:, None]  # rows of very different scale


@pytest.mark.parametrize("bits, worst", [(8, 0.01), (4, 0.2)])
def test_a_row_comes_back_within_its_width_and_as_predicted(bits, worst):
    x = _rows()
    y = C.decode("x", C.encode("x", x, torch.full((6,), bits)), [6, 200])
    err = (y - x).pow(2).sum(1)
    assert torch.allclose(err.double(), C.row_errors(x, bits), rtol=1e-5)
    assert ((err.sqrt() / x.norm(dim=1)) < worst).all()  # blockwise scales: small rows keep their precision
    assert (y - x).abs().max() > 0  # it is lossy: the check above measures something


def test_dropped_rows_decode_to_zero_and_odd_widths_are_padded():
    x = _rows(cols=70)  # not a multiple of the block
    x[2] = 0.0
    bits = torch.tensor([8, 4, 0, 8, 4, 0])
    stored = C.encode("m", x.reshape(2, 3, 70), bits)
    y = C.decode("m", stored, [2, 3, 70]).reshape(6, 70)
    assert torch.equal(y[2], x[2]) and torch.equal(y[5], torch.zeros(70))
    assert stored["m::q4"].dtype == torch.uint8 and stored["m::q8"].dtype == torch.int8


def test_allocate_fits_the_budget_and_gives_up_the_cheapest_error_first():
    x = _rows()
    errors = {b: C.row_errors(x, b) for b in C.WIDTHS}
    weights = torch.ones(6)
    full = 6 * C.row_bytes(200, 8)
    assert C.allocate(weights, errors, 200, full).tolist() == [8] * 6
    budget = full - 3 * (C.row_bytes(200, 8) - C.row_bytes(200, 4))
    bits = C.allocate(weights, errors, 200, budget)
    assert sum(C.row_bytes(200, int(b)) for b in bits) <= budget
    assert bits.tolist() == [8, 8, 8, 4, 4, 4]  # the small rows lose least by going to 4 bits
    heavy = C.allocate(torch.tensor([1.0, 1, 1, 1, 1, 1e8]), errors, 200, budget)
    assert heavy[-1] == 8  # ...unless what multiplies them makes their error count


def test_damaged_codes_are_refused_with_the_path():
    x = _rows()
    stored, shapes = files.encode_tensors({"x": x, "y": torch.ones(3)}, {"x": torch.full((6,), 4)})
    assert set(files.decode_tensors(stored, shapes, "ckpt")) == {"x", "y"}
    with pytest.raises(CheckpointError, match="ckpt: x: stored 4-bit codes do not fit"):
        files.decode_tensors(stored, {"x": [6, 300]}, "ckpt")
    with pytest.raises(CheckpointError, match="not listed in storage.codes"):
        files.decode_tensors(stored, {}, "ckpt")
    with pytest.raises(CheckpointError, match="malformed"):
        files.decode_tensors(stored, {"x": "6x200"}, "ckpt")
    bad = {**stored, "x::rows4": torch.tensor([0, 1, 2, 3, 4, 99], dtype=torch.int32)}
    with pytest.raises(CheckpointError, match="do not fit"):
        files.decode_tensors(bad, shapes, "ckpt")


def test_four_bit_levels_are_fitted_to_the_tensor_and_stored_with_it():
    x = _rows(n=8, cols=256) ** 3  # heavy tails: most entries far below their block's largest
    levels = C.levels4(x)
    assert levels.shape == (16,) and bool((levels[1:] > levels[:-1]).all())
    uniform = torch.linspace(-1, 1, 16)
    assert C.row_errors(x, 4).sum() < C.row_errors(x, 4, uniform).sum()  # fitted levels lose less
    stored = C.encode("x", x, torch.full((8,), 4))
    assert torch.equal(stored["x::l4"], levels)
    broken = {**stored, "x::l4": torch.full((16,), float("nan"))}
    with pytest.raises(ValueError, match="levels are missing or damaged"):
        C.decode("x", broken, [8, 256])


@pytest.mark.parametrize("cols", [1, 7, 12, 64, 130])
def test_short_and_odd_rows_cost_no_more_than_their_width(cols):
    x = _rows(n=4, cols=cols)
    for bits in (8, 4):
        stored = C.encode("x", x, torch.full((4,), bits))
        size = sum(t.numel() * t.element_size() for k, t in stored.items() if not k.endswith("l4"))
        assert size == 4 * C.row_bytes(cols, bits)
        if cols <= C.BLOCK:  # one block, padded to an even count only: no padding to a full block
            assert C.row_bytes(cols, bits) == (cols + cols % 2) * bits // 8 + 2 + 4
        y = C.decode("x", stored, [4, cols])
        assert torch.allclose(y, x, atol=float(x.abs().max()) / (4 if bits == 4 else 100))


def test_values_beyond_fp16_are_refused_not_zeroed():
    x = _rows()
    x[0, 0] = 1e6
    with pytest.raises(ValueError, match="beyond fp16's range"):
        C.encode("x", x, torch.full((6,), 8))
