"""Identity, blob and border-band checks of the shipped weights (derain_core.sanity).

    .venv/bin/python scripts/sanity_checks.py [--models dsmnet rranet] [--variant rain100l]
        [--crop 256] [--weights-dir runs/dsmnet_rain100l/export] [--json results/sanity.json]

Prints one row per model (worst case over the photos and examples) and exits 1 if any
model misses a limit. ``--weights-dir`` checks exported weights before they ship.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="model ids (default: all registered)")
    ap.add_argument("--variant", help="weights variant (default: the engine's choice)")
    ap.add_argument("--crop", type=int, help="center crops of this size (default: whole images)")
    ap.add_argument("--weights-dir", help="read weights from this folder instead of weights/")
    ap.add_argument("--json", type=Path, help="also write the full report here")
    args = ap.parse_args()
    if args.weights_dir:
        os.environ["DERAIN_WEIGHTS_DIR"] = str(Path(args.weights_dir).resolve())
    from derain_core import sanity
    from derain_core.registry import model_ids

    reports = [sanity.check_model(m, args.variant, args.crop) for m in (args.models or model_ids())]
    print(sanity.reports_table(reports))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_json() for r in reports], indent=1) + "\n")
    return 1 if any(r.failures() for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
