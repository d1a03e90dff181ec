"""`loragen demo --base-model smollm2`: the demo's loop on the generative suite over SmolLM2-135M-Instruct.

1. build (or reuse) a small bank: oracle LoRAs for a handful of in-bank tasks of the suite ("smollm2-gen") related
   to one held-out task (same op or same part of its family: held-out "month -> Polish" with "month -> Spanish"
   and "weekday -> Polish" in the bank), trained with the suite's recipe (`bank/suite_llm/recipe.yaml`) through
   `loragen bank build`'s code path (`bank.train.stored.train_provider_tasks`);
2. train the CVAE briefly on that bank (`hypernet/configs/smollm2.yaml`: description-only conditioning), reused
   when the bank has not changed;
3. generate an adapter for the held-out task from a held-out wording of its description;
4. score exact match (greedy, first line, case-insensitive: the evaluation harness's `GenerationScorer`) on the
   held-out task's test examples for the base model, the base model with the description as system prompt, the
   generated adapter and the task's own oracle (trained here for reference, never put in the bank).

Everything lives under ``$LORAGEN_HOME/demo-smollm2`` (or --home). `run_llm_demo` takes any causal LM (a local
transformers directory, e.g. a tiny random Llama in the tests) and recipe, so the tests run this very code.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loragen.api.commands._demo_common import pick_heldout, print_scores, step, train_generator

TEST_EXAMPLES = 16  # held-out test pairs scored per row
N_SAMPLES = 3  # completions shown
HYPERNET_CONFIG = "smollm2.yaml"  # under hypernet/configs/


def run_from_args(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """`run_llm_demo` with the CLI's options (the packaged base model `args.base_model`)."""
    return run_llm_demo(home, base_model=args.base_model, task=args.task, n_tasks=args.tasks, steps=args.steps,
                        seed=args.seed)


def related_cells(specs: Sequence, target, n: int) -> list:
    """`n` in-bank tasks of the target's family that share its op or its part, alternating (same op first), each
    list in name order; then other tasks of the family when those run out (deterministic).

    For held-out "date-name/month/pl": month -> other languages and weekday -> Polish, interleaved, so the bank
    holds both halves of the new combination.
    """
    pool = sorted((s for s in specs if s.split == "train" and s.family == target.family), key=lambda s: s.name)
    op, part = target.data_ref.get("op"), target.data_ref.get("part")
    same_op = [s for s in pool if s.data_ref.get("op") == op]
    same_part = [s for s in pool if s.data_ref.get("part") == part]
    picked: list = []
    for i in range(max(len(same_op), len(same_part))):
        picked += [group[i] for group in (same_op, same_part) if i < len(group)]
    picked += [s for s in pool if s not in picked]
    return picked[:n]


def _config_file() -> Path:
    import loragen.hypernet

    return Path(loragen.hypernet.__file__).parent / "configs" / HYPERNET_CONFIG


def run_llm_demo(home: Path, *, base_model: str = "smollm2", task: str | None = None, n_tasks: int = 6,
                 steps: int = 300, seed: int = 0, recipe: Mapping[str, Any] | None = None,
                 test_examples: int = TEST_EXAMPLES, progress: bool = True) -> dict[str, Any]:
    """Build (or reuse) the bank, train (or reuse) the CVAE, generate for the held-out task and score it.

    Args:
        home: the demo's folder (bank.duckdb, hypernet/, oracle/, adapter/).
        base_model: a packaged causal LM's name or a local transformers directory (the suite's tasks are trained
            over it instead of SmolLM2).
        task: the held-out suite task (default: the first held-out date-name task).
        n_tasks: in-bank tasks to build.
        steps: CVAE training steps.
        seed: the suite seed, and the CVAE's and generation's.
        recipe: TrainConfig fields of the oracles (default: the suite's recipe file).
        test_examples: the held-out task's test pairs scored.
        progress: show progress bars.

    Returns:
        {"heldout_task", "description", "bank_tasks", "exact_match" (row -> {"exact match", "log-likelihood"}),
        "samples" ([{"input", "reference", "generated"}]), "adapter_dir", "home"}.
    """
    from loragen.bank.evaluate.generation import GenerationScorer
    from loragen.bank.generator import GenerationRequest
    from loragen.bank.lora import save_peft
    from loragen.bank.store import Bank
    from loragen.bank.tasks import GENERATIVE, get_provider
    from loragen.bank.train import CausalLM, load_recipe
    from loragen.bank.train.stored import train_provider_tasks
    from loragen.hypernet.generate import CVAEGenerator

    suite = get_provider(GENERATIVE, seed=seed)
    specs = suite.tasks()
    target = pick_heldout(specs, task, preferred=lambda s: s.family == "date-name")
    bank_tasks = related_cells(specs, target, n_tasks)
    description = (target.heldout_paraphrases or (target.description,))[0]
    recipe = dict(recipe if recipe is not None else load_recipe(suite.recipe))
    with Bank.open(home / "bank.duckdb") as bank:
        step(f"bank: {len(bank_tasks)} in-bank tasks related to the held-out task {target.name!r} "
              f"({home / 'bank.duckdb'})")
        summary = train_provider_tasks(bank, bank_tasks, base_model=base_model, recipe=recipe, progress=progress,
                                       splits=())  # scored below on the held-out task only
        if summary.trained:
            bank.reindex()
        checkpoint = train_generator(bank, home, None, seed, config_file=_config_file(), steps=steps)
    lm = CausalLM(base_model)
    step(f"generate for the held-out description: {description!r}")
    request = GenerationRequest(description=description, n_samples=1, seed=seed, base_model=lm.base_model_id)
    generated = CVAEGenerator.from_checkpoint(checkpoint).generate(request)[0]
    oracle = heldout_oracle(target, suite.data(target), lm, recipe, home)
    adapter_dir = save_peft(generated.with_metadata(task=target.name, description=description), home / "adapter")
    step(f"evaluate on {test_examples} of the held-out task's test examples (greedy, exact match)")
    score = GenerationScorer(lm, suite.data, test_examples)
    rows = {"base": score(target, None), "base + description (system prompt)": score(target, None, description),
            "generated (cvae, demo bank)": score(target, generated), "oracle (trained on the task)":
            score(target, oracle)}
    return {"heldout_task": target.name, "description": description, "base_model": lm.base_model_id,
            "bank_tasks": [t.name for t in bank_tasks],
            "exact_match": {k: {"exact match": v["exact_match"], "log-likelihood": v["loglik"]}
                            for k, v in rows.items()},
            "samples": sample_completions(lm, score.pairs(target)[:N_SAMPLES], generated),
            "adapter_dir": str(adapter_dir), "home": str(home)}


def heldout_oracle(target, data, lm, recipe: Mapping[str, Any], home: Path):
    """The held-out task's own oracle, for reference: trained once with the bank's recipe, kept in an oracle cache
    under `home`, never added to the bank."""
    from loragen.bank.tasks import OracleCache
    from loragen.bank.train import TrainConfig, attention_targets, train_causal_adapter

    cache = OracleCache(home / "oracle")
    if not cache.has_final(target.name):
        step(f"oracle: training the held-out task's own adapter for reference ({target.name})")
        config = TrainConfig(**{**recipe, "target_modules": recipe.get("target_modules")
                                or attention_targets(lm.model)})
        cache.save_oracle(target.name, train_causal_adapter(target, data, lm, config).final)
    return cache.final(target.name)


def sample_completions(lm, pairs: Sequence[tuple[str, str]], adapter) -> list[dict[str, str]]:
    """Greedy completions of `pairs`' inputs with `adapter` applied, as `CausalLM.scores` decodes them."""
    from loragen.bank.causal_lm import complete
    from loragen.bank.lora.functional import lora_applied

    longest = max(len(lm.tokenizer(y, add_special_tokens=False)["input_ids"]) for _, y in pairs)
    with lora_applied(lm.model, adapter.to(lm.device)):
        outputs = complete(lm.model, lm.tokenizer, [x for x, _ in pairs], max_new_tokens=longest + 2)
    return [{"input": x, "reference": y, "generated": out.strip()} for (x, y), out in zip(pairs, outputs)]


def print_report(result: dict) -> None:
    """The result as text: the held-out task, the bank, the score table, sample completions, the adapter."""
    print()
    print(f"held-out task : {result['heldout_task']}  (base model {result['base_model']})")
    print(f"description   : {result['description']}  (a held-out wording)")
    print(f"bank          : {len(result['bank_tasks'])} in-bank tasks: {', '.join(result['bank_tasks'])}")
    print()
    print_scores(result["exact_match"])
    print()
    for i, sample in enumerate(result["samples"], 1):
        print(f"sample {i}      : {sample['input']!r} -> {sample['generated']!r} (reference {sample['reference']!r})")
    print()
    print(f"PEFT adapter  : {result['adapter_dir']}")
    print(f"total time    : {result['seconds']} s")
