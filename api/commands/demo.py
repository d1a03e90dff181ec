"""`loragen demo`: the whole loop on the built-in suite, on this machine, in a few minutes.

1. build (or reuse) a small bank: oracle LoRAs for a handful of in-bank suite tasks related to one held-out task;
2. train the ICM-LoRA hypernetwork briefly on that bank (reused when the bank has not changed);
3. generate an adapter for the held-out task from its description alone (a wording never used in training);
4. when loragen ships a generator for MiniLM (`loragen release build`, trained on the whole suite, never on the
   held-out tasks), generate for the same held-out description with it too: what `loragen generate` gives out of
   the box;
5. print test accuracy of the base model, the generated adapters, retrieval from the bank and the task's own
   oracle (trained here for reference, never put in the bank), the uncertainty score, and where the PEFT
   adapter was written (the shipped generator's when there is one).

Everything lives under ``$LORAGEN_HOME/demo`` (or --home), so a second run reuses the bank and the checkpoint.
``--base-model smollm2`` runs the same loop on the generative suite over SmolLM2-135M-Instruct
(`api.commands.demo_llm`, under ``$LORAGEN_HOME/demo-smollm2``) and reports exact match instead of accuracy.
Steps 1-2 show training; the shipped generator shows the product. `loragen generate` and `loragen serve` use
yours at the default location first, then the shipped one, then the demo's (`api.lookup`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from loragen.api.commands._demo_common import pick_heldout, print_scores, start_clock, step, train_generator
from loragen.api.commands._options import add_packaged_base_model, add_seed, add_threads, positive_int

EPILOG = """examples:
  loragen demo                         # ~16 in-bank tasks, a short hypernet training, one held-out task
  loragen demo --tasks 24 --epochs 150 # a bigger bank and longer training (slower, usually more accurate)
  loragen demo --json                  # the result as one JSON object (for scripts)
  loragen demo --base-model smollm2    # ~6 generative tasks over SmolLM2, a short CVAE run, one held-out task
"""

# Per base model: the options its demo takes (others are refused) and their defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    "minilm": {"tasks": 16, "epochs": 60, "samples": 8, "oracles": None, "threads": 1},
    "smollm2": {"tasks": 6, "steps": 300, "threads": 2},
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build a small bank, train the generator, generate for a held-out task",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_packaged_base_model(p, "the packaged base model whose built-in suite the demo runs on: minilm "
                            "(classification, the default) or smollm2 (generation, exact match)")
    p.add_argument("--home", type=Path, default=None,
                   help="working folder (default $LORAGEN_HOME/demo, or $LORAGEN_HOME/demo-smollm2)")
    p.add_argument("--tasks", type=positive_int, default=None, metavar="N",
                   help="in-bank tasks to build (default 16; smollm2: 6)")
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="hypernetwork training epochs (minilm only; default 60)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="hypernetwork training steps (smollm2 only; default 300)")
    p.add_argument("--task", default=None, help="held-out suite task to generate for (default: a language pair; "
                   "smollm2: the first held-out date-name task)")
    p.add_argument("--samples", type=positive_int, default=None, metavar="N",
                   help="samples drawn for the uncertainty score (minilm only; default 8)")
    add_seed(p, "suite and sampling seed", default=0)
    p.add_argument("--oracles", type=Path, default=None,
                   help="folder of pre-trained oracle PEFT dirs (<task with / as __>/final) to import instead of "
                   "training; tasks missing there are trained")
    add_threads(p, why="1 for minilm, whose steps are too small to split (a second thread on a busy 2-core "
                "machine waits at barriers, up to 10x slower); 2 for smollm2")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from loragen.bank import paths
    from loragen.bank.device import torch_threads
    from loragen.bank.train.lora_module import quiet_lightning

    start = start_clock()
    fill_defaults(args)
    llm = args.base_model != "minilm"
    home = (args.home or paths.demo_home(args.base_model if llm else None)).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    torch.manual_seed(args.seed)
    if llm:
        from loragen.api.commands import demo_llm

        run_demo, report = demo_llm.run_from_args, demo_llm.print_report
    else:
        run_demo, report = _run, print_report
    with torch_threads(args.threads):
        result = run_demo(args, home)
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


def fill_defaults(args: argparse.Namespace) -> None:
    """Fill the options left unset with the base model's defaults (`DEFAULTS`).

    Raises:
        ConfigError: an option the chosen base model's demo does not take (--epochs, --oracles, --samples for
            smollm2; --steps for minilm).

    Usage::

        args = argparse.Namespace(base_model="smollm2", tasks=None, epochs=None, steps=None, samples=None,
                                  oracles=None, threads=None)
        fill_defaults(args)   # args.tasks == 6, args.steps == 300, args.threads == 2
    """
    from loragen.bank.errors import ConfigError

    defaults = DEFAULTS[args.base_model]
    foreign = [f"--{name}" for name in ("epochs", "steps", "samples", "oracles")
               if name not in defaults and getattr(args, name, None) is not None]
    if foreign:
        other = "smollm2" if args.base_model == "minilm" else "minilm"
        raise ConfigError(f"{', '.join(foreign)} is for `loragen demo --base-model {other}`; leave it out with "
                          f"--base-model {args.base_model}")
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def _run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from loragen.bank import paths
    from loragen.bank.generator import GenerationRequest
    from loragen.bank.lora import save_peft
    from loragen.bank.store import Bank
    from loragen.bank.tasks import BUILTIN, get_provider
    from loragen.bank.train import build_bank, imported_oracles

    suite = get_provider(BUILTIN, seed=args.seed)
    specs = suite.tasks()
    target = pick_heldout(specs, args.task)
    bank_tasks = related_tasks(specs, target, args.tasks)
    description = (target.heldout_paraphrases or (target.description,))[0]
    classifier = suite.classifier()
    data, n = suite.data(target), len(target.labels)
    inputs = [text for text, _ in data.val]

    with Bank.open(home / "bank.duckdb") as bank:
        step(f"bank: {len(bank_tasks)} in-bank tasks related to the held-out task {target.name!r} "
              f"({home / 'bank.duckdb'})")
        oracle = imported_oracles(args.oracles) if args.oracles else None
        build_bank(bank, bank_tasks, oracle=oracle, classifier=classifier)
        bank.reindex()
        checkpoint = train_generator(bank, home, args.epochs, args.seed)
        step(f"generate for the held-out description: {description!r}")
        request = GenerationRequest(description=description, labels=target.labels, n_samples=1, seed=args.seed)
        cvae = load_cvae(checkpoint)
        generated = cvae.generate(request)[0]
        samples = cvae.generate(GenerationRequest(description=description, labels=target.labels,
                                                  n_samples=args.samples, seed=args.seed))
        retrieved = retrieve(bank, request)
        uncertainty = score_uncertainty(classifier, bank, description, samples, inputs, n)
    oracle = heldout_oracle(target, classifier, home)
    shipped = shipped_generation(request)
    best = shipped["adapter"] if shipped else generated
    adapter_dir = save_peft(best.with_metadata(task=target.name, description=description), home / "adapter")
    step("evaluate on the held-out task's test split")
    accuracy = {"base": classifier.accuracy(data.test, None, n), "generated (cvae, demo bank)":
                classifier.accuracy(data.test, generated, n)}
    if shipped:
        accuracy["generated (cvae, shipped)"] = classifier.accuracy(data.test, shipped["adapter"], n)
    if retrieved is not None:
        accuracy["retrieved (nearest bank adapter)"] = classifier.accuracy(data.test, retrieved, n)
    accuracy["oracle (trained on the task)"] = classifier.accuracy(data.test, oracle, n)
    return {"heldout_task": target.name, "description": description, "labels": list(target.labels),
            "bank_tasks": len(bank_tasks), "accuracy": accuracy, "uncertainty": uncertainty,
            "adapter_dir": str(adapter_dir), "home": str(home), "default_home": home == paths.demo_home(),
            "shipped": {k: v for k, v in shipped.items() if k != "adapter"} if shipped else None}


def shipped_generation(request) -> dict[str, Any] | None:
    """The shipped MiniLM CVAE's adapter for `request` and where it came from, or None when none is shipped.

    Returns:
        {"adapter", "checkpoint", "evaluation"} (the manifest's normalised gain per split, when recorded).
    """
    from loragen.api.lookup import shipped_generators
    from loragen.bank import paths
    from loragen.bank.base_model import DEFAULT_BASE_MODEL

    folder = paths.shipped_dir("hypernet", DEFAULT_BASE_MODEL)
    if not (folder / "config.json").is_file():
        return None
    step(f"generate with the shipped generator ({folder})")
    adapter = load_cvae(folder).generate(request)[0]
    evaluation = (shipped_generators().get(DEFAULT_BASE_MODEL) or {}).get("evaluation", {}).get("cvae")
    return {"adapter": adapter, "checkpoint": str(folder), "evaluation": evaluation}


def related_tasks(specs: list, target, n: int) -> list:
    """`n` in-bank tasks of the target's family, closest first (deterministic order).

    Closest means sharing a label *in the same position* (for "0 = English, 1 = German": "0 = English, 1 = X" and
    "0 = X, 1 = German"), then sharing a label at all. Label order matters: a bank of "German = 0" tasks teaches
    the reverse of the held-out task, and both its nearest neighbour and the generator then score about 0.
    """
    pool = [s for s in specs if s.split == "train" and s.family == target.family]

    def closeness(spec) -> tuple[int, int, str]:
        same_place = sum(a == b for a, b in zip(spec.labels, target.labels))
        return -same_place, -len(set(spec.labels) & set(target.labels)), spec.name

    return sorted(pool, key=closeness)[:n]


def load_cvae(checkpoint: Path):
    from loragen.hypernet.generate import CVAEGenerator

    return CVAEGenerator.from_checkpoint(checkpoint)


def retrieve(bank, request):
    """The nearest bank adapter by description (None when the retrieval generator is not installed)."""
    try:
        from loragen.bank.retrieval import RetrievalGenerator
    except ImportError:
        return None
    return RetrievalGenerator(bank).generate(request)[0]


def score_uncertainty(classifier, bank, description: str, samples: list, inputs: list[str], n: int) -> dict:
    from loragen.api.uncertainty import build_scorer, score

    return score(build_scorer(classifier, bank), description, samples, inputs, num_labels=n)


def heldout_oracle(target, classifier, home: Path):
    """The held-out task's own oracle, for reference: trained once, kept in an oracle cache, never added to the
    bank."""
    from loragen.bank.tasks import OracleCache
    from loragen.bank.train import train_task_adapter

    cache = OracleCache(home / "oracle")
    if not cache.has_final(target.name):
        step(f"oracle: training the held-out task's own adapter for reference ({target.name})")
        cache.save_oracle(target.name, train_task_adapter(target, classifier=classifier).final)
    return cache.final(target.name)


def print_report(result: dict) -> None:
    print()
    print(f"held-out task : {result['heldout_task']}  labels {result['labels']}")
    print(f"description   : {result['description']}")
    print(f"bank          : {result['bank_tasks']} in-bank tasks (the held-out task is not among them)")
    print()
    print_scores({name: {"test accuracy": acc} for name, acc in result["accuracy"].items()})
    u = result["uncertainty"]
    if u:
        kind = "calibrated" if u.get("calibrated") else "uncalibrated: mean max-probability"
        print()
        print(f"uncertainty   : confidence {u['confidence']:.3f} ({kind}); mutual information "
              f"{u['mutual_information']:.4f} nats over {u['n_adapters']} samples; nearest bank description "
              f"similarity {u.get('description_similarity') or 0:.3f} ({u.get('nearest_task')})")
    print()
    shipped = result.get("shipped")
    if shipped:
        gains = ", ".join(f"{k} {v:.3f}" for k, v in (shipped.get("evaluation") or {}).items() if v is not None)
        print(f"shipped       : {shipped['checkpoint']} (trained on the whole suite, never on held-out tasks"
              f"{'; normalised gain ' + gains if gains else ''})")
    else:
        print("shipped       : none in this install (`loragen release build` makes them); the demo's bank "
              "generator is what `loragen generate` uses")
    print(f"PEFT adapter  : {result['adapter_dir']}")
    print(f"total time    : {result['seconds']} s")
    if result.get("default_home"):
        print()
        whose = "the shipped generator" if result.get("shipped") else "this demo's generator"
        print(f"next          : loragen generate \"<a task description>\" -o out/adapter   # uses {whose} until you "
              "train your own (`loragen train hypernet`)")
