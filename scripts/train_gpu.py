"""Turn a short stay on a CUDA machine into weights: train all five within a time budget.

    scripts/train_gpu.sh MINUTES OUT [PACK_PART ...]        (the shell wrapper also logs)
    python scripts/train_gpu.py MINUTES OUT [--parts .pack/part0 ...] [--models ...] [--tiny]

1. Unpacks the training pairs from pack parts (``python -m derain_core.pack``; default
   ``.pack/part*``), or uses ``--data DIR``.
2. Splits MINUTES between the models by each one's gap to its target PSNR-Y on Rain100L
   test (``TARGETS``, from the weight issues) as measured in its shipped card.
3. Trains each from its shipped weights (``derain train`` with ``--minutes``, the short-budget
   recipe, bf16 where the device has it), one after the other.
4. Writes into OUT one ``<model>.tar`` per model holding a run folder (``log.csv`` and
   ``export/<model>_<variant>.{safetensors,json}``), split into ``.partN`` pieces of at most
   16 MiB where needed, so that at most 8 files come back. ``scripts/receive_gpu.sh`` turns
   them back into ``runs/<model>_<variant>_gpu/`` folders for ``scripts/ship_weights.py``.

The test split is not on the GPU machine: ``derain eval`` on Rain100L test runs here, after
the files come back, as for any chunk. ``--tiny`` trains the cards' tiny configs (the CPU test).
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derain_core import pack  # noqa: E402
from derain_core.registry import model_ids  # noqa: E402
from derain_core.train import TrainConfig, train  # noqa: E402
from derain_core.weights import WEIGHTS_DIR, read_card, weights_path  # noqa: E402

VARIANT = "rain100l"
RAINY_INPUT_PSNR_Y = 26.90  # Rain100L test, the rainy input itself (results/rain100l)
TARGETS = {"msamnet": 36.4, "dsmnet": 37.0, "mfan": 37.0, "rranet": 37.0, "jdnet": 37.0}  # dB PSNR-Y
PIECE = 16 * 2 ** 20  # bytes: the largest file that comes back
OVERHEAD_S = 25.0  # per model: build, data loading, validation and export


def current_psnr(model_id: str) -> float:
    """The shipped weights' PSNR-Y on Rain100L test (the rainy input's when none is recorded)."""
    card = read_card(model_id, VARIANT) or {}
    return float(card.get("metrics", {}).get("rain100l_test", {}).get("psnr_y", RAINY_INPUT_PSNR_Y))


def split_budget(minutes: float, models: list[str]) -> dict[str, float]:
    """Minutes per model, proportional to its gap to target (at least 0.5 dB counted)."""
    gaps = {m: max(TARGETS.get(m, 37.0) - current_psnr(m), 0.5) for m in models}
    total = sum(gaps.values())
    return {m: minutes * g / total for m, g in gaps.items()}


def bundle(run_dir: Path, out: Path, name: str) -> list[Path]:
    """``run_dir``'s log and export as ``out/name.tar`` (split into 16-MiB ``.partN`` pieces)."""
    tar_path = out / f"{name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in [run_dir / "log.csv", *sorted((run_dir / "export").glob("*"))]:
            if f.is_file():
                tar.add(f, arcname=f"{run_dir.name}/{f.relative_to(run_dir)}")
    if tar_path.stat().st_size <= PIECE:
        return [tar_path]
    data = tar_path.read_bytes()
    tar_path.unlink()
    pieces = []
    for k in range(0, len(data), PIECE):
        piece = out / f"{name}.tar.part{k // PIECE}"
        piece.write_bytes(data[k:k + PIECE])
        pieces.append(piece)
    return pieces


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minutes", type=float, help="total training minutes for all models together")
    ap.add_argument("out", type=Path, help="where the (at most 8) result files go")
    ap.add_argument("--parts", nargs="*", help="pack part folders (default: .pack/part*)")
    ap.add_argument("--data", help="a paired folder instead of a pack")
    ap.add_argument("--models", nargs="*", help="default: all registered")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--val-every", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--identity-mix", type=float, default=0.0, metavar="F",
                    help="fraction of identity pairs (clean in, clean out), see derain train --identity-mix")
    ap.add_argument("--tiny", action="store_true", help="tiny configs from scratch (the CPU test)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="derain_gpu_"))
    models = args.models or model_ids()

    if args.data:
        data = Path(args.data)
    else:
        parts = args.parts or sorted(glob.glob(str(ROOT / ".pack" / "part*")))
        if not parts:
            print("error: no pack parts (python -m derain_core.pack DATA .pack) and no --data", file=sys.stderr)
            return 2
        data = work / "data"
        n = pack.unpack(parts, data)
        print(f"unpacked {n} pairs from {len(parts)} part(s) in {time.monotonic() - t0:.1f} s", flush=True)

    left = args.minutes - (time.monotonic() - t0) / 60 - OVERHEAD_S * len(models) / 60
    budget = split_budget(max(left, 0.05 * len(models)), models)
    print("budget (min): " + ", ".join(f"{m} {b:.2f}" for m, b in budget.items()), flush=True)
    summary, files, failed = [], [], []
    for m in models:
        init = weights_path(m, VARIANT)
        cfg = TrainConfig(model=m, data=str(data), minutes=budget[m], batch=args.batch, patch=args.patch,
                          val_every=args.val_every, out=str(work / "runs" / f"{m}_{VARIANT}_gpu"),
                          variant=VARIANT, device=args.device, progress=False, tiny=args.tiny,
                          identity_mix=args.identity_mix,
                          init=None if args.tiny or not init.is_file() else str(init),
                          compile_blocks=False)  # as on CUDA, also in its CPU test: no minute-long compiles
        t = time.monotonic()
        try:
            res = train(cfg)
        except Exception as e:  # one model's failure must not cost the others their turn
            print(f"{m}: FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(m)
            continue
        files += bundle(res.out_dir, args.out, m)
        row = {"model": m, "minutes": round(budget[m], 2), "wall_s": round(time.monotonic() - t, 1),
               "steps": res.step, "sec_per_step": res.sec_per_step, "stopped": res.stopped,
               "best_val_psnr_y": res.best_val_psnr_y, "best_step": res.best_step,
               "init": cfg.init, "shipped_test_psnr_y": current_psnr(m)}
        summary.append(row)
        print(json.dumps(row), flush=True)
    print(f"files: {', '.join(f.name for f in files)}")
    print(f"total {time.monotonic() - t0:.1f} s; weights dir {WEIGHTS_DIR}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
