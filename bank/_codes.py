"""Integer codes for the large tensors of a shipped checkpoint: a bit width per row, blockwise absmax scales.

A tensor is seen as rows (its last dimension is the row). Each row is stored with 8 or 4 bits per entry, or dropped
(0 bits: it decodes to zeros, exact for a row that is zero); within a row, every `BLOCK` consecutive entries share
one fp16 scale (their largest magnitude), so a block with small entries keeps its precision. 8-bit codes are
uniform; the 16 levels of the 4-bit codes are fitted to the tensor (Lloyd-Max on its block-normalised entries: on
the suite CVAE's heavy-tailed readout basis, 10% relative error against 14% for uniform levels) and stored with it.
4-bit codes are packed two to a byte. Which rows get which width is the caller's choice (`allocate` picks the
widths that lose the least under a byte budget, given how much each row's error weighs).

In `model.safetensors` a coded tensor NAME is stored as `NAME::rows<b>` (int32 row numbers), `NAME::q<b>` (codes)
and `NAME::s<b>` (scales) for each width b used, plus `NAME::l4` (the 4-bit levels); `config.json` records its
shape under storage.codes. Decoding reads only these tensors: nothing is executed, nothing unpickled.

Usage::

    bits = allocate(weights, {8: err8, 4: err4, 0: err0}, cols=x.shape[-1], budget=20_000_000)
    stored = encode("readout.basis", x, bits)       # dict of plain tensors
    x_hat = decode("readout.basis", stored, list(x.shape))
"""

from __future__ import annotations

import torch

BLOCK = 64  # entries per scale (rows shorter than this are one block)
WIDTHS = (8, 4, 0)  # bits per entry a row may get; 0 drops the row
SEP = "::"


def block_size(cols: int) -> int:
    """Entries per scale in rows of `cols` entries."""
    return max(2, min(BLOCK, cols + cols % 2))  # even, so 4-bit codes pack into whole bytes


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(R, C) -> (R, nblocks, block), zero-padded at the end of each row."""
    rows, cols = x.shape
    block = block_size(cols)
    pad = (-cols) % block
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(rows, -1, block)


_LLOYD_SAMPLES = 1 << 20  # entries the 4-bit levels are fitted on (an even stride through the tensor)
_LLOYD_STEPS = 30


def _normalised(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C) -> (entries over their block's scale, in [-1, 1], (R, nblocks, BLOCK); scales (R, nblocks) fp16)."""
    blocks = _blocks(x.to(torch.float32))
    scales = blocks.abs().amax(-1).to(torch.float16)
    safe = scales.to(torch.float32).clamp_min(torch.finfo(torch.float16).tiny)[..., None]
    return (blocks / safe).clamp(-1, 1), scales


def levels4(x: torch.Tensor) -> torch.Tensor:
    """The 16 levels (ascending, fp32) of 4-bit codes for the (R, C) tensor `x`: Lloyd-Max on its block-normalised
    entries, started from uniform levels; deterministic."""
    u = _normalised(x.reshape(-1, x.shape[-1]))[0].flatten()
    u = u[:: max(1, u.numel() // _LLOYD_SAMPLES)].double()
    levels = torch.linspace(-1, 1, 16, dtype=torch.float64)
    for _ in range(_LLOYD_STEPS):
        cell = torch.bucketize(u, (levels[1:] + levels[:-1]) / 2)
        sums = torch.zeros(16, dtype=torch.float64).index_add_(0, cell, u)
        counts = torch.zeros(16, dtype=torch.float64).index_add_(0, cell, torch.ones_like(u))
        levels = torch.where(counts > 0, sums / counts.clamp_min(1), levels)
    return levels.sort().values.float()


def _quantise(x: torch.Tensor, bits: int, levels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C) float -> (codes (R, nblocks, BLOCK) int8, scales (R, nblocks) fp16): 8 bits uniform in [-127, 127],
    4 bits the index of the nearest of `levels` in [0, 15]."""
    u, scales = _normalised(x)
    if bits == 8:
        return torch.round(u * 127).to(torch.int8), scales
    return torch.bucketize(u, (levels[1:] + levels[:-1]) / 2).to(torch.int8), scales


def _dequantise(codes: torch.Tensor, scales: torch.Tensor, cols: int, levels: torch.Tensor | None = None
                ) -> torch.Tensor:
    values = codes.to(torch.float32) / 127 if levels is None else levels[codes.long()]
    out = values * scales.to(torch.float32)[..., None]
    return out.reshape(codes.shape[0], -1)[:, :cols]


def row_errors(x: torch.Tensor, bits: int, levels: torch.Tensor | None = None) -> torch.Tensor:
    """(R,) squared error of each row of the (R, C) tensor `x` coded with `bits` (0: the row's squared norm; 4: on
    `levels`, default `levels4(x)`, what `encode` uses)."""
    x = x.to(torch.float32)
    if bits == 0:
        return x.double().pow(2).sum(1)
    if bits == 4 and levels is None:
        levels = levels4(x)
    codes, scales = _quantise(x, bits, levels)
    return (_dequantise(codes, scales, x.shape[1], levels if bits == 4 else None).double()
            - x.double()).pow(2).sum(1)


def row_bytes(cols: int, bits: int) -> int:
    """Stored bytes of one row of `cols` entries at `bits` (codes, scales and its row number)."""
    if bits == 0:
        return 0
    block = block_size(cols)
    nblocks = -(-cols // block)
    return nblocks * block * bits // 8 + 2 * nblocks + 4


def allocate(weights: torch.Tensor, errors: dict[int, torch.Tensor], cols: int, budget: int) -> torch.Tensor:
    """Bit widths per row that fit `budget` bytes, greedily giving up the least weighted error per byte saved.

    Args:
        weights: (R,) how much a unit of squared error in each row costs downstream (for a factor of a product,
            the squared norm of what multiplies it).
        errors: width -> (R,) squared error of each row at that width (`row_errors`), for every width in WIDTHS.
        cols: entries per row.
        budget: bytes the rows may take together.

    Returns:
        (R,) long tensor of widths; all 0 if even that does not fit (the caller decides whether that is acceptable).
    """
    rows = weights.shape[0]
    level = torch.zeros(rows, dtype=torch.long)  # index into WIDTHS: 0 = 8 bits, the most precise
    cost = {b: row_bytes(cols, b) for b in WIDTHS}
    weighted = {b: weights.double() * errors[b].double() for b in WIDTHS}
    total = rows * cost[WIDTHS[0]]
    while total > budget:
        best, best_row = None, -1
        for r in range(rows):
            if level[r] + 1 >= len(WIDTHS):
                continue
            now, nxt = WIDTHS[int(level[r])], WIDTHS[int(level[r]) + 1]
            ratio = float(weighted[nxt][r] - weighted[now][r]) / max(cost[now] - cost[nxt], 1)
            if best is None or ratio < best:
                best, best_row = ratio, r
        if best_row < 0:
            break
        now, nxt = WIDTHS[int(level[best_row])], WIDTHS[int(level[best_row]) + 1]
        total -= cost[now] - cost[nxt]
        level[best_row] += 1
    return torch.tensor(WIDTHS, dtype=torch.long)[level]


def encode(name: str, x: torch.Tensor, bits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The stored tensors of `x` (rows = its last dimension) with the given per-row widths.

    Raises:
        ValueError: a width outside WIDTHS, `bits` not one per row, or values not finite or beyond fp16's range.
    """
    flat = x.detach().reshape(-1, x.shape[-1]).to(torch.float32).cpu()
    bits = bits.reshape(-1).long().cpu()
    if bits.shape[0] != flat.shape[0]:
        raise ValueError(f"{name}: {bits.shape[0]} widths for {flat.shape[0]} rows")
    if bad := sorted(set(bits.tolist()) - set(WIDTHS)):
        raise ValueError(f"{name}: widths {bad} are not in {WIDTHS}")
    if flat.numel() and (not bool(torch.isfinite(flat).all())
                         or float(flat.abs().max()) > torch.finfo(torch.float16).max):
        raise ValueError(f"{name}: values that are not finite or beyond fp16's range cannot be coded (their scale "
                         "is stored in fp16); keep this tensor in fp32")
    out: dict[str, torch.Tensor] = {}
    for b in WIDTHS[:-1]:
        rows = (bits == b).nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            continue
        levels = levels4(flat) if b == 4 else None  # fitted on every row, as `row_errors` measured them
        codes, scales = _quantise(flat[rows], b, levels)
        if b == 4:  # two codes a byte, low nibble first
            nibbles = codes.to(torch.uint8).reshape(*codes.shape[:2], codes.shape[2] // 2, 2)
            codes = nibbles[..., 0] | (nibbles[..., 1] << 4)
            out[f"{name}{SEP}l4"] = levels.contiguous()
        out[f"{name}{SEP}rows{b}"] = rows.to(torch.int32).contiguous()
        out[f"{name}{SEP}q{b}"] = codes.contiguous()
        out[f"{name}{SEP}s{b}"] = scales.contiguous()
    return out


def is_code(key: str) -> bool:
    """Whether a stored key is part of a coded tensor."""
    return SEP in key


def decode(name: str, stored: dict[str, torch.Tensor], shape: list[int]) -> torch.Tensor:
    """The fp32 tensor `name` of `shape` from its stored codes (rows not stored are zeros).

    Raises:
        ValueError: codes that do not fit the shape (a damaged or foreign file).
    """
    cols = int(shape[-1])
    n_rows = 1
    for d in shape[:-1]:
        n_rows *= int(d)
    block = block_size(cols)
    nblocks = -(-cols // block)
    out = torch.zeros(n_rows, cols)
    for b in WIDTHS[:-1]:
        rows = stored.get(f"{name}{SEP}rows{b}")
        if rows is None:
            continue
        codes, scales = stored.get(f"{name}{SEP}q{b}"), stored.get(f"{name}{SEP}s{b}")
        width = block * b // 8
        if (codes is None or scales is None or rows.dtype != torch.int32 or rows.ndim != 1
                or (rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n_rows))
                or tuple(codes.shape) != (rows.numel(), nblocks, width)
                or tuple(scales.shape) != (rows.numel(), nblocks)):
            raise ValueError(f"{name}: stored {b}-bit codes do not fit shape {list(shape)}")
        levels = None
        if b == 4:
            levels = stored.get(f"{name}{SEP}l4")
            if levels is None or tuple(levels.shape) != (16,) or not bool(torch.isfinite(levels).all()):
                raise ValueError(f"{name}: the 4-bit levels are missing or damaged")
            codes = torch.stack([codes & 0x0F, codes >> 4], -1).reshape(rows.numel(), nblocks, block)
        out[rows.long()] = _dequantise(codes, scales, cols, levels.float() if levels is not None else None)
    return out.reshape(shape)
