"""Can SmolLM2-135M-Instruct learn the generative suite's tasks with a small LoRA on a 2-core CPU? Measured per task.

For each probed task: exact match on its test split (greedy, first line, case-insensitive) of the base model with
an empty system prompt ("zero-shot"), with the task description as the system prompt ("description"), and with a
rank-r LoRA on q_proj/v_proj of the upper layers after K training steps (batch 8, Adam, output-token loss, the
suite's prompt format with an empty system prompt). Seconds per training step count the step only (forward,
backward, update), not evaluation. Writes bench/results/llm_suite_probe.json.

    LORAGEN_HOME=.loragen .venv/bin/python bench/llm_suite_probe.py
    LORAGEN_HOME=.loragen .venv/bin/python bench/llm_suite_probe.py --tasks date-name/month/pt --steps 20,40
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

import torch

from loragen.bank.base_model import load_base_model, load_tokenizer
from loragen.bank.causal_lm import collate, complete, encode_example, exact_match, output_loss, pad_id
from loragen.bank.lora.functional import lora_applied
from loragen.bank.suite_llm import load_suite, task_data

RESULTS = Path(__file__).parent / "results"
DEFAULT_TASKS = (
    "date-name/month/pt", "number-words/cardinal/es", "number-words/read/fr", "date-format/long/fr_FR",
    "number-format/euro/de_DE", "person-name/swap/de_DE", "word-list/reverse/en", "date-format/read/es_ES",
    "date-name/weekday/de", "word-list/second/de",
)


def init_factors(model, layers: range, targets: tuple[str, ...], rank: int, seed: int) -> dict:
    """LoRA factors per targeted module: A uniform in ±1/sqrt(in) (PEFT's Kaiming default), B zero."""
    gen = torch.Generator().manual_seed(seed)
    factors = {}
    for i in layers:
        for name in targets:
            lin = getattr(model.model.layers[i].self_attn, name)
            bound = 1 / math.sqrt(lin.in_features)
            a = ((torch.rand(rank, lin.in_features, generator=gen) * 2 - 1) * bound).requires_grad_()
            b = torch.zeros(lin.out_features, rank, requires_grad=True)
            factors[f"model.layers.{i}.self_attn.{name}"] = (a, b)
    return factors


def score(model, tok, pairs, factors=None, scaling=1.0, system=None) -> float:
    """Exact match on `pairs`. Generation stops a few tokens past the longest reference: exact match reads the first
    line only, so a longer answer could not match anyway (and the base model rambles to any limit)."""
    texts, refs = [x for x, _ in pairs], [y for _, y in pairs]
    max_new_tokens = max(len(tok(y, add_special_tokens=False)["input_ids"]) for y in refs) + 3
    if factors is None:
        return exact_match(complete(model, tok, texts, system=system, max_new_tokens=max_new_tokens), refs)
    with lora_applied(model, factors, scaling):
        return exact_match(complete(model, tok, texts, max_new_tokens=max_new_tokens), refs)


def probe_task(model, tok, task, args) -> dict:
    data = task_data(task)
    test = data.test[: args.n_test]
    row: dict = {"task": task.name, "family": task.family, "op": task.data_ref["op"], "split": task.split,
                 "description": task.description, "example": list(data.train[0])}
    row["zero_shot"] = score(model, tok, test)
    row["with_description"] = score(model, tok, test, system=task.description)
    factors = init_factors(model, range(args.first_layer, 30), tuple(args.targets.split(",")), args.rank, args.seed)
    opt = torch.optim.Adam([p for ab in factors.values() for p in ab], lr=args.lr)
    encoded = [encode_example(tok, x, y, max_length=args.max_length) for x, y in data.train]
    row["max_tokens"] = max(len(e.input_ids) for e in encoded)
    rng, order, step, train_s, pad = random.Random(args.seed), [], 0, 0.0, pad_id(tok)
    scaling = args.alpha / args.rank
    for k in sorted(int(s) for s in args.steps.split(",")):
        while step < k:
            if len(order) < args.batch:  # epochs over the training split, reshuffled
                fresh = list(range(len(encoded)))
                rng.shuffle(fresh)
                order += fresh
            batch = collate([encoded[i] for i in order[: args.batch]], pad)
            order = order[args.batch:]
            start = time.perf_counter()
            with lora_applied(model, factors, scaling):
                loss = output_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_s += time.perf_counter() - start
            step += 1
        row[f"em_after_{k}"] = score(model, tok, test, factors, scaling)
        row[f"loss_at_{k}"] = round(loss.item(), 4)
    row["s_per_step"] = round(train_s / step, 3)
    row["train_s"] = round(train_s, 1)
    return row


def summarise(rows: list[dict], steps: list[int]) -> dict:
    fams: dict[str, dict] = {}
    for fam in sorted({r["family"] for r in rows}):
        sel = [r for r in rows if r["family"] == fam]
        keys = ["zero_shot", "with_description", *[f"em_after_{k}" for k in steps], "s_per_step"]
        fams[fam] = {k: round(statistics.mean(r[k] for r in sel), 3) for k in keys} | {"tasks": len(sel)}
    return fams


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated suite task names")
    p.add_argument("--steps", default="20,40,80", help="evaluate after these step counts")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--targets", default="q_proj,v_proj")
    p.add_argument("--first-layer", type=int, default=15, help="adapt layers first_layer..29 (SmolLM2 has 30)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--n-test", type=int, default=32)
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads; on a CPU shared with other jobs 1 thread (or OMP_WAIT_POLICY=PASSIVE) is faster")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "llm_suite_probe.json"))
    p.add_argument("--resume", action="store_true", help="keep the tasks already in --out and probe the rest")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, tok = load_base_model("smollm2"), load_tokenizer("smollm2")
    model.requires_grad_(False)
    model.eval()
    by_name = {t.name: t for t in load_suite()}
    out_path = Path(args.out)
    rows = json.loads(out_path.read_text())["tasks"] if args.resume and out_path.exists() else []
    steps = sorted(int(s) for s in args.steps.split(","))
    for name in args.tasks.split(","):
        if any(r["task"] == name for r in rows):
            continue
        started, load_before = time.perf_counter(), os.getloadavg()[0]
        row = probe_task(model, tok, by_name[name], args)
        row["task_s"] = round(time.perf_counter() - started, 1)
        row["load_avg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # the CPU is shared
        row["threads"] = args.threads
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        out = {"config": vars(args) | {"resume": False}, "families": summarise(rows, steps), "tasks": rows}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")  # after every task
    print(json.dumps(summarise(rows, steps), indent=1))


if __name__ == "__main__":
    main()
