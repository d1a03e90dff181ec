"""Warm generation latency of the ICM-LoRA CVAE: description -> adapter in memory, and -> PEFT files on disk.

Reports p50/p99 (ms) at batch 1 and batch 32 and writes bench/results/generate.json. With --checkpoint it times a
trained checkpoint; without, a freshly initialised CVAE of the same size for the suite's layout (all-MiniLM-L6-v2,
LoRA r=4 on query/key/value of 6 layers): latency does not depend on the weights' values.

    python bench/generate.py [--checkpoint DIR] [--runs 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LANGS = ["English", "German", "Dutch", "Danish", "French", "Italian", "Spanish", "Polish", "Czech", "Filipino"]


def _nonce(i: int) -> str:
    return "".join(chr(97 + (i // 26**k) % 26) for k in range(4))


def _descriptions(n: int, start: int = 0) -> list[str]:
    """n descriptions never asked before (a nonce word makes each one new, so the text encoder always runs on the
    whole description; the short per-label texts like "Polish" repeat, as class names do in real traffic)."""
    out = []
    for i in range(start, start + n):
        a, b = LANGS[i % len(LANGS)], LANGS[(i * 3 + 1) % len(LANGS)]
        out.append(f"Label 0 if the text is written in {a}, label 1 if the text is written in {b}. Ref {_nonce(i)}.")
    return out


def _untrained_generator():
    from loragen.bank.base_model import DEFAULT_BASE_MODEL, load_base_model
    from loragen.bank.lora.adapter import LoraAdapter
    from loragen.hypernet._text import default_text_encode
    from loragen.hypernet.config import HypernetConfig
    from loragen.hypernet.generate import CVAEGenerator
    from loragen.hypernet.layout import AdapterLayout
    from loragen.hypernet.model import CVAE

    model = load_base_model()
    names = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in ("query", "key", "value")]
    template = LoraAdapter(DEFAULT_BASE_MODEL, 4, 8.0, {n: torch.zeros(4, 384) for n in names},
                           {n: torch.zeros(384, 4) for n in names})
    config = HypernetConfig()
    cvae = CVAE(config, AdapterLayout.of(template)).eval()
    return CVAEGenerator(cvae, config, default_text_encode(), source="untrained (timing only)")


def _time(fn, runs: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))],
            "mean_ms": statistics.fmean(times), "runs": runs}


def _breakdown(gen, runs: int) -> dict[str, dict[str, float]]:
    """Where batch-1 time goes: the text encoder (MiniLM on the description and its per-label texts, uncached),
    the CVAE decoder, and building the LoraAdapter."""
    from loragen.bank.generator import GenerationRequest
    from loragen.hypernet.condition import collate_conditions, condition_texts, embed_conditions

    cc = gen.config.condition
    counter = iter(range(10**6))

    def texts():
        d = _descriptions(1, 5 * 10**5 + next(counter))[0]
        return condition_texts(d, None, None, cc.max_slots)

    encode = gen.encode._encode  # the encoder behind the LRU cache: always runs
    batch = collate_conditions(embed_conditions([texts()], encode, cc.max_slots, cc.text_dim,
                                                global_text=cc.global_text))
    with torch.inference_mode():
        tokens = gen.model.sample(batch, 1)[0, 0]
        request = GenerationRequest(_descriptions(1)[0], base_model=gen.layout.base_model)
        return {
            "text_encoder": _time(lambda: embed_conditions([texts()], encode, cc.max_slots, cc.text_dim,
                                                            global_text=cc.global_text), runs),
            "cvae_decoder": _time(lambda: gen.model.sample(batch, 1), runs),
            "build_adapter": _time(lambda: gen._adapter(request, tokens, 0), runs),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: 2 shared cores thrash with more)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/generate.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from loragen.bank.generator import GenerationRequest
    from loragen.bank.lora import save_peft
    from loragen.hypernet.generate import CVAEGenerator

    gen = CVAEGenerator.from_checkpoint(args.checkpoint) if args.checkpoint else _untrained_generator()
    base = gen.layout.base_model
    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    results = {}
    try:
        for batch in (1, 32):
            runs = args.runs if batch == 1 else max(10, args.runs // 5)
            counter = iter(range(10**6))

            def fresh_requests():
                start = next(counter) * batch + batch * 10**4  # a new block of descriptions per call
                return [GenerationRequest(d, base_model=base) for d in _descriptions(batch, start)]

            def memory():
                return gen.generate_batch(fresh_requests())

            def disk():
                for i, [adapter] in enumerate(gen.generate_batch(fresh_requests())):
                    save_peft(adapter, tmp / f"a{i}")

            results[f"batch_{batch}"] = {"memory": _time(memory, runs), "peft_on_disk": _time(disk, runs)}
            for kind in ("memory", "peft_on_disk"):
                r = results[f"batch_{batch}"][kind]
                r["per_adapter_p50_ms"] = r["p50_ms"] / batch
                print(f"batch {batch:2d} {kind:12s} p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  "
                      f"({r['per_adapter_p50_ms']:.2f} ms/adapter)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["batch_1_breakdown"] = _breakdown(gen, args.runs)
    print("batch 1 breakdown (p50 ms):", {k: round(v["p50_ms"], 2) for k, v in results["batch_1_breakdown"].items()})
    adapter = gen.generate(_descriptions(1)[0])[0]
    report = {
        "benchmark": "generate",
        "generator": "cvae",
        "checkpoint": str(args.checkpoint) if args.checkpoint else "untrained (same size; timing only)",
        "adapter": {"base_model": base, "modules": len(adapter.modules), "r": adapter.r,
                    "parameters": adapter.num_parameters()},
        "cvae_parameters": sum(p.numel() for p in gen.model.parameters()),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": args.threads, "platform": platform.platform(),
                    "torch": torch.__version__, "load_average": os.getloadavg()},
        "target": "p50 <= 20 ms at batch 1 (description -> adapter in memory)",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
