"""`loragen release`: make the small generators that ship inside the package.

  compact SRC DST   a compact copy of a CVAE or ABMLL checkpoint (fp16 storage, the CVAE readout as a truncated
                    SVD, no recomputable buffers), with its size before/after and the largest relative difference of
                    the adapters both generate for a few descriptions;
  build             the whole release: suite bank, default CVAE and ABMLL (fixed seeds), harness evaluation,
                    compaction, checkpoints + manifest.json into the shipped folder.
"""

from __future__ import annotations

import argparse
import json
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


def add_compact_options(p: argparse.ArgumentParser) -> None:
    """--rank, --energy, --max-mb: how far the CVAE readout is compressed (shared with `release build`)."""
    p.add_argument("--rank", type=positive_int, default=None, metavar="K",
                   help="keep at most K readout components (CVAE)")
    p.add_argument("--energy", type=fraction, default=None, metavar="F",
                   help="keep the fewest readout components holding this share of the readout map's energy "
                   "(CVAE; default 0.999999: relative error about sqrt(1 - F))")
    p.add_argument("--max-mb", type=positive_float, default=25.0, metavar="MB",
                   help="cap the readout rank so that the CVAE checkpoint fits in MB megabytes (default 25)")


def run_compact(args: argparse.Namespace) -> int:
    from loragen.api.release import CHECK_DESCRIPTIONS, compact

    report = compact(args.src, args.dst, max_rank=args.rank, energy=args.energy, max_mb=args.max_mb,
                     descriptions=args.description or CHECK_DESCRIPTIONS)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rank = f", readout rank {report['readout_rank']} ({report['readout_energy']:.6f} of its energy)" \
        if "readout_rank" in report else ""
    print(f"{report['method']} {args.src} -> {args.dst}: {report['bytes_before'] / 1e6:.1f} MB -> "
          f"{report['bytes_after'] / 1e6:.1f} MB{rank}")
    print(f"max relative ΔW difference over {len(args.description or CHECK_DESCRIPTIONS)} descriptions: "
          f"{report['max_relative_difference']:.2e}")
    return 0
