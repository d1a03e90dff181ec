"""`loragen release`: make the small generators that ship inside the package.

  compact SRC DST   a compact copy of a CVAE or ABMLL checkpoint (fp16 storage, the CVAE readout as a truncated
                    SVD and, over the size budget, 8/4-bit codes; no recomputable buffers), with its size
                    before/after and the largest relative difference of the adapters both generate for a few
                    descriptions;
  build             the whole release: suite bank, default CVAE and ABMLL (fixed seeds), harness evaluation,
                    compaction, checkpoints + manifest.json into the shipped folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from loragen.api.commands._options import fraction, positive_float, positive_int

EPILOG = """examples:
  loragen release compact ~/.local/share/loragen/hypernet small/hypernet --max-mb 25
  loragen release build --oracle-cache /work/cache/oracles          # the real release (MiniLM suite)
  loragen release build --max-tasks 4 --out /tmp/shipped --work /tmp/rel   # a tiny end-to-end run
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="compact checkpoints and build the shipped default generators",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="release_command", metavar="STEP", required=True)
    c = steps.add_parser("compact", help="write a compact copy of a generator checkpoint and measure it",
                         description="Write a compact copy of checkpoint SRC to DST and print the sizes and the "
                         "largest relative ΔW difference of the adapters both generate.")
    c.add_argument("src", type=Path, help="a CVAE or ABMLL checkpoint directory")
    c.add_argument("dst", type=Path, help="where the compact copy goes")
    add_compact_options(c)
    c.add_argument("--description", action="append", default=None, metavar="TEXT",
                   help="a description to compare on (repeatable; default: four built-in ones)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=run_compact)
    _add_build(steps)


def _add_build(steps: argparse._SubParsersAction) -> None:
    from loragen.api.commands._options import add_no_progress, add_threads

    b = steps.add_parser("build", help="build, evaluate, compact and ship the default generators (resumable)",
                         description="The release build (`api.release_build`): suite bank, default CVAE and ABMLL "
                         "with fixed seeds, harness evaluation of the full-precision and the compact pair, "
                         "compaction, then checkpoints + manifest.json into the shipped folder. A stage whose "
                         "output exists in --work is skipped, so rerunning resumes.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--oracle-cache", type=Path, default=None, metavar="DIR",
                   help="import prebuilt oracles from DIR (<task, '/'->'__'>/final); only the tasks found there are "
                   "built, like `loragen bank build --import-dir DIR --import-only`")
    b.add_argument("--work", type=Path, default=None, metavar="DIR",
                   help="work folder: bank, full-precision checkpoints, evaluations (default $LORAGEN_HOME/release)")
    b.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="shipped root to write into (default: the package's, bank/shipped; $LORAGEN_SHIPPED_DIR "
                   "when set)")
    b.add_argument("--max-tasks", type=positive_int, default=None, metavar="N",
                   help="build at most N in-bank suite tasks (and N/2 held-out ones): quick runs")
    b.add_argument("--tiny", action="store_true",
                   help="an end-to-end check in well under a minute: 3 in-bank tasks, a few steps per stage, "
                   "8 test examples, one condition (never ship its output)")
    b.add_argument("--hypernet-steps", type=positive_int, default=None, metavar="N",
                   help="CVAE optimiser steps (default 2000)")
    b.add_argument("--meta-steps", type=positive_int, default=None, metavar="N",
                   help="ABMLL SVI steps (default: meta/configs/abmll_suite.yaml's)")
    b.add_argument("--max-examples", type=positive_int, default=None, metavar="N",
                   help="test examples per task in the evaluation (default 64)")
    b.add_argument("--eval-max-tasks", type=positive_int, default=None, metavar="N",
                   help="evaluate at most N tasks per split (fixed random sample; default 12)")
    b.add_argument("--trust-max-tasks", type=positive_int, default=None, metavar="N",
                   help="tasks per split of the trust fit (default: --eval-max-tasks; ~40 s per case and condition "
                   "on 2 cores)")
    add_compact_options(b)
    add_threads(b)
    add_no_progress(b)
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from loragen.api.commands._options import apply_threads
    from loragen.api.release_build import BuildOptions, build

    apply_threads(args)
    chosen = {k: v for k, v in (("work", args.work), ("out", args.out), ("oracle_cache", args.oracle_cache),
                                ("max_tasks", args.max_tasks), ("hypernet_steps", args.hypernet_steps),
                                ("meta_steps", args.meta_steps), ("max_examples", args.max_examples),
                                ("eval_max_tasks", args.eval_max_tasks), ("trust_max_tasks", args.trust_max_tasks),
                                ("rank", args.rank), ("energy", args.energy), ("max_mb", args.max_mb))
              if v is not None}
    chosen["progress"] = not args.no_progress
    chosen["command"] = shlex.join(["loragen", *getattr(args, "argv", [])])
    options = BuildOptions.tiny(**chosen) if args.tiny else BuildOptions(**chosen)
    manifest = build(options)
    print(json.dumps({"methods": manifest["methods"], "evaluation_side_by_side":
                      manifest["evaluation_side_by_side"], "seconds": manifest["seconds"]}, indent=2))
    return 0


def add_compact_options(p: argparse.ArgumentParser) -> None:
    """--rank, --energy, --max-mb: how far the CVAE readout is compressed (shared with `release build`)."""
    p.add_argument("--rank", type=positive_int, default=None, metavar="K",
                   help="keep at most K readout components (CVAE)")
    p.add_argument("--energy", type=fraction, default=None, metavar="F",
                   help="keep the fewest readout components holding this share of the readout map's energy "
                   "(CVAE; default 0.999999: relative error about sqrt(1 - F))")
    p.add_argument("--max-mb", type=positive_float, default=25.0, metavar="MB",
                   help="size budget of the CVAE checkpoint (default 25): when fp16 does not fit, its readout is "
                   "stored as 8/4-bit integer codes chosen to lose the least (the suite CVAE: 80 MB in fp16)")


def run_compact(args: argparse.Namespace) -> int:
    from loragen.api.release import CHECK_DESCRIPTIONS, compact

    report = compact(args.src, args.dst, max_rank=args.rank, energy=args.energy, max_mb=args.max_mb,
                     descriptions=args.description or CHECK_DESCRIPTIONS)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rank = f", readout rank {report['readout_rank']} ({report['readout_energy']:.6f} of its energy)" \
        if "readout_rank" in report else ""
    for name, rows in (report.get("coded_rows") or {}).items():
        rank += f"; {name} rows at 8/4/0 bits: {rows['8']}/{rows['4']}/{rows['0']}"
    print(f"{report['method']} {args.src} -> {args.dst}: {report['bytes_before'] / 1e6:.1f} MB -> "
          f"{report['bytes_after'] / 1e6:.1f} MB{rank}")
    print(f"max relative ΔW difference over {len(args.description or CHECK_DESCRIPTIONS)} descriptions: "
          f"{report['max_relative_difference']:.2e}")
    return 0
