"""Backfill the `balance_own` trust feature into stored calibration cases, without the bank they were fitted on.

`balance_own` (how evenly an adapter spreads its labels over the user's inputs, `api.probe.label_balance`) came
after the shipped generators' trust fit. It needs only the case's point adapter and the task's inputs, both
rebuildable: the adapter from the generator and the case's request, the inputs from the task's provider. Each case
is regenerated and its accuracy measured again on the same test examples; only a case whose measured accuracy
reproduces exactly gets the feature (anything else keeps None, so the trust model never mixes another adapter's
feature with a stored accuracy; ABMLL's example-refined adapters changed since, for instance).

    python bench/trust_backfill.py --report bench/results/trust_minilm_release.json \\
        --method cvae=bank/shipped/sentence-transformers__all-MiniLM-L6-v2/hypernet \\
        --method abmll=bank/shipped/sentence-transformers__all-MiniLM-L6-v2/meta \\
        --out bench/results/trust_minilm_release_balance.json --write-trust-files

Writes the report with the feature filled in (and per method how many cases reproduced) and, with
--write-trust-files, each method's CHECKPOINT/trust.json rebuilt from those cases (same cases, meta and training
wordings). Then `loragen trust refit` gives the cross-validated metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

FEATURE = "balance_own"


def backfill(report: dict, generators: dict, provider_name: str, seed: int, progress: bool) -> dict[str, dict]:
    """Fill FEATURE into `report`'s cases of each method in `generators`, in place; per method, what reproduced."""
    from loragen.api.probe import Probe
    from loragen.api.trust_fit import EvalCase, _measure, _request
    from loragen.api.uncertainty import PROBE_TEXTS
    from loragen.bank.tasks import get_provider

    provider = get_provider(provider_name)
    classifier = provider.classifier()
    tasks = {t.name: t for t in provider.tasks()}
    probe = Probe(classifier=classifier)
    summary = {}
    for method, generator in generators.items():
        cases = report["methods"][method]["cases"]
        reproduced = 0
        for case in tqdm(cases, desc=method, unit="case", disable=not progress):
            task = tasks[case["task"]]
            data = provider.data(task)
            request = _request(EvalCase(case["split"], task, case["description"], case["condition"]),
                               classifier.base_model_id, seed, data)
            point = generator.generate(replace(request, n_samples=1))[0]
            measured = _measure(classifier, task, data.test[:report["max_examples"]], point)
            value = None
            if abs(measured - case["measured"]) < 1e-9:
                reproduced += 1
                inputs = [x for x, _ in data.val[:PROBE_TEXTS]]  # as `api.trust_fit.collect`
                value = probe.stats([point], inputs, len(task.labels))["balance"]
            case["features"][FEATURE] = value
        summary[method] = {"cases": len(cases), "reproduced": reproduced}
    return summary


def rewrite_trust_file(path: Path, cases: list[dict]) -> None:
    """The trust file rebuilt from `cases` (which must be its own cases, in order), its meta and wordings kept."""
    from loragen.meta.trust import TrustModel

    old = TrustModel.load(path)
    if [c["task"] for c in cases] != old.groups or any(abs(c["measured"] - t) > 1e-12
                                                          for c, t in zip(cases, old.targets)):
        raise SystemExit(f"{path}: its cases are not the report's (tasks or measured accuracies differ)")
    TrustModel.fit([c["features"] for c in cases], [c["measured"] for c in cases], old.groups, target=old.target,
                   alpha=old.alpha, coverage=old.coverage, meta=old.meta,
                   reference_embeddings=old.reference_embeddings).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="a `loragen trust fit` report (its --json)")
    parser.add_argument("--method", action="append", required=True, metavar="NAME=CHECKPOINT",
                        help="cvae or abmll with the checkpoint the report's cases were generated with")
    parser.add_argument("--provider", default="minilm-suite", help="the provider of the report's tasks")
    parser.add_argument("--seed", type=int, default=0, help="the seed `trust fit` ran with (its default 0)")
    parser.add_argument("--out", type=Path, required=True, help="the report with the feature filled in")
    parser.add_argument("--write-trust-files", action="store_true",
                        help="rebuild CHECKPOINT/trust.json of each method from the backfilled cases")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from loragen.api.generators import REGISTRY, GeneratorContext
    from loragen.bank.tasks import get_provider

    report = json.loads(args.report.read_text())
    checkpoints = dict(spec.split("=", 1) for spec in args.method)
    clf = get_provider(args.provider).classifier
    generators = {m: REGISTRY[m].build(GeneratorContext(None, "cpu", Path(c), clf)) for m, c in checkpoints.items()}
    summary = backfill(report, generators, args.provider, args.seed, not args.no_progress)
    report["backfill"] = {"feature": FEATURE, "command": "python " + " ".join(sys.argv), "methods": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for method, s in summary.items():
        print(f"{method}: {s['reproduced']}/{s['cases']} cases reproduced and given {FEATURE}")
        if args.write_trust_files:
            path = Path(checkpoints[method]) / "trust.json"
            rewrite_trust_file(path, report["methods"][method]["cases"])
            print(f"  rewrote {path}")
    print(f"report: {args.out}; next: loragen trust refit <trust files> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
