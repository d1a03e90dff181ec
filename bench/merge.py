"""Merge benchmark: loragen's merge vs PEFT's merge_and_unload vs the memory-bandwidth floor, in one run.

A random Llama-shaped model (TinyLlama-1.1B's shape by default) gets an r=16 LoRA on every linear layer of its
decoder. Timed side by side, on the same weights:

- loragen: `bank.lora.merge` (one fused addmm_ per layer, no ΔW materialised);
- peft: `get_peft_model(...)` with the same factors, then `merge_and_unload()` (only the merge is timed);
- floor: `w.add_(0.5)` on every targeted weight: each weight read and written exactly once, no arithmetic
  worth the name, i.e. the memory-bandwidth floor of any in-place merge;
- dense add: `w.add_(d)` with a precomputed full-size delta `d` (what a merge that materialises ΔW does at
  best: reads W and ΔW, writes W). Reported for reference.
- compute floor: a merge must also do r multiply-adds per weight (2·r·N flops); at the device's measured
  dense-matmul peak (a square fp32/bf16 matmul timed in the same run) that gives a second floor. Whichever
  floor is higher bounds any merge; on a 2-core CPU at r=16 it is the compute one.

Outputs are checked: the logits of the loragen-merged and PEFT-merged models must agree.

Usage::

    .venv/bin/python bench/merge.py                 # TinyLlama shape, CPU (or the GPU when present)
    .venv/bin/python bench/merge.py --layers 4      # quicker, fewer layers
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from transformers import LlamaConfig, LlamaForCausalLM

from loragen.bank.device import resolve_device, resolve_dtype
from loragen.bank.lora import LoraAdapter, merge
from loragen.bank.lora.peft_format import peft_key

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_model(layers: int, device: torch.device, dtype: torch.dtype, base_model: str | None = None
                ) -> LlamaForCausalLM:
    if base_model:  # a real base model (e.g. "smollm2"), loaded offline as loragen loads it
        from loragen.bank.base_model import load_base_model

        return load_base_model(base_model, dtype=dtype, device=device)
    config = LlamaConfig(  # TinyLlama-1.1B's shape
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    )
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def random_adapter(model: torch.nn.Module, r: int, seed: int) -> LoraAdapter:
    g = torch.Generator().manual_seed(seed)
    lora_A, lora_B = {}, {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS:
            out_f, in_f = module.weight.shape
            lora_A[name] = torch.randn(r, in_f, generator=g) / in_f**0.5
            lora_B[name] = torch.randn(out_f, r, generator=g) * 0.01
    return LoraAdapter("bench/tinyllama-shape", r, 2.0 * r, lora_A, lora_B)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """The device's dense-matmul throughput (flop/s): the best of a few square n×n matmuls."""
    x = torch.randn(n, n, device=device, dtype=dtype)
    y = torch.randn(n, n, device=device, dtype=dtype)
    x @ y  # warm-up (library init, clocks)
    return 2 * n**3 / min(timed(lambda: x @ y, device) for _ in range(repeats))


def targeted_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in TARGETS]


def run(args: argparse.Namespace) -> dict:
    device, dtype = resolve_device(args.device), resolve_dtype(args.dtype)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(args.layers, device, dtype, args.base_model)
    adapter = random_adapter(model, args.rank, seed=1)
    weights = targeted_weights(model)
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e9:.2f}B params, {len(weights)} targeted weights ({nbytes / 2**30:.2f} GiB), "
          f"built in {time.perf_counter() - t0:.1f}s on {device} ({dtype})")
    ids = torch.randint(0, model.config.vocab_size, (1, 16), device=device)

    deltas = {tuple(w.shape): torch.full_like(w, 1e-3) for w in weights}  # one per shape: bounded memory
    floor, dense, ours, peft = [], [], [], []
    with torch.no_grad():
        base_logits = model(ids).logits.float()
        for _ in range(args.repeats):  # interleaved so that machine noise hits all of them alike
            floor.append(timed(lambda: [w.add_(0.5) for w in weights], device))
            dense.append(timed(lambda: [w.add_(deltas[tuple(w.shape)]) for w in weights], device))
            for w in weights:
                w.sub_(0.5 + 1e-3)
            handle = None

            def do_merge():
                nonlocal handle
                handle = merge(model, adapter)

            ours.append(timed(do_merge, device))
            handle.unmerge()
        with torch.no_grad():
            merge_handle = merge(model, adapter)
            ours_logits = model(ids).logits.float()
            merge_handle.unmerge()

    config = LoraConfig(r=args.rank, lora_alpha=2.0 * args.rank, target_modules=list(TARGETS))
    peft_model = get_peft_model(model, config)
    state = {}
    for m, a, b in adapter.items():
        state[peft_key(m, "A")] = a.to(device, dtype)
        state[peft_key(m, "B")] = b.to(device, dtype)
    for i in range(args.repeats):
        set_peft_model_state_dict(peft_model, state)
        merged = None

        def do_peft():
            nonlocal merged
            merged = peft_model.merge_and_unload()

        peft.append(timed(do_peft, device))
        if i == 0:
            with torch.no_grad():
                peft_logits = merged(ids).logits.float()
        with torch.no_grad():  # restore the base weights exactly as loragen would, then wrap again
            merge(merged, adapter, [-1.0])
        if i + 1 < args.repeats:
            peft_model = get_peft_model(merged, config)

    max_diff = (ours_logits - peft_logits).abs().max().item()
    t_floor, t_dense, t_ours, t_peft = (statistics.median(x) for x in (floor, dense, ours, peft))
    peak = matmul_peak_flops(device, dtype)
    n_weights = sum(w.numel() for w in weights)
    t_compute = 2 * args.rank * n_weights / peak
    result = {
        "machine": platform.processor() or platform.machine(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."),
        "params": n_params,
        "base_model": args.base_model or "random TinyLlama-1.1B shape",
        "layers": model.config.num_hidden_layers,
        "rank": args.rank,
        "targeted_bytes": nbytes,
        "repeats": args.repeats,
        "seconds": {"loragen": t_ours, "peft": t_peft, "floor_inplace_add": t_floor, "dense_delta_add": t_dense},
        "speedup_vs_peft": t_peft / t_ours,
        "fraction_of_floor_bandwidth": t_floor / t_ours,
        "loragen_gb_per_s": 2 * nbytes / t_ours / 1e9,
        "floor_gb_per_s": 2 * nbytes / t_floor / 1e9,
        "fraction_of_dense_add_time": t_dense / t_ours,
        "matmul_peak_gflops": peak / 1e9,
        "compute_floor_seconds": t_compute,
        "fraction_of_compute_floor": t_compute / t_ours,
        "bound_by": "compute" if t_compute > t_floor else "memory",
        "best_possible_fraction_of_floor_bandwidth": min(1.0, t_floor / t_compute),
        "max_abs_logit_diff_vs_peft": max_diff,
        "max_abs_logit_change_from_base": (ours_logits - base_logits).abs().max().item(),
    }
    if device.type == "cuda" and args.peak_gbps:
        result["fraction_of_card_bandwidth"] = result["loragen_gb_per_s"] / args.peak_gbps
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=22, help="decoder layers (22 = TinyLlama-1.1B)")
    p.add_argument("--base-model", default=None, help="merge into this real base model (e.g. smollm2) instead")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--peak-gbps", type=float, default=0.0, help="the card's peak memory bandwidth, GB/s (GPU only)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "merge.json")
    args = p.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tag = "cuda" if result["device"] != "cpu" else "cpu"
    model_tag = f"-{args.base_model.replace('/', '_')}" if args.base_model else ""
    out = args.out.with_name(f"{args.out.stem}{model_tag}-{tag}-{result['dtype']}{args.out.suffix}")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
