"""Peak resident memory of one model's tiled full-resolution run, in a fresh process per run.

    .venv/bin/python scripts/tiled_memory.py rranet --size 2048x1536 [--spill-mb 1024 100000]

For each ``--spill-mb`` value (``DERAIN_SPILL_MB``: whole-image state kept in memory before it
goes to a temporary file) a child process loads the model (shipped weights, fast path), runs
the engine's tiled path (512-pixel tiles) on a bundled example resized to ``--size``, and
reports: resident memory before the run, the peak during it (VmHWM, reset just before), the
model's own estimate (``tiled_memory``: bytes in memory and in temporary files), the wall time,
and the PSNR of the output against the first run's (0 = identical: inf).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(model_id: str, w: int, h: int, out: str) -> None:
    """One measured run (in this process); writes its numbers to ``out`` (JSON) and the
    output image next to it (``.npy``)."""
    import numpy as np
    import torch
    from PIL import Image

    from derain_core import io
    from derain_core.engine import MODELS, run_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    img = Image.open(ROOT / "assets/examples/astronaut_heavy_rainy.png").convert("RGB").resize((w, h), Image.BICUBIC)
    loaded = MODELS.get(model_id)
    x = io.to_tensor(np.asarray(img, dtype=np.float32) / 255, channels_last=loaded.channels_last)
    run_model(loaded, x[..., :64, :64], tile=0)  # warm the kernels outside the measurement
    ram, disk = loaded.net.tiled_memory(h, w, loaded.device)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    before = _kb("VmRSS")
    t0 = time.perf_counter()
    y, tile = run_model(loaded, x, tile=512)
    seconds = time.perf_counter() - t0
    np.save(out + ".npy", io.to_numpy(y))
    Path(out).write_text(json.dumps({"before_mb": before / 1024, "peak_mb": _kb("VmHWM") / 1024,
                                     "estimate_ram_mb": ram / 2**20, "estimate_disk_mb": disk / 2**20,
                                     "seconds": seconds, "tile": tile, "precision": loaded.precision}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--size", default="2048x1536", help="WxH (default 2048x1536)")
    ap.add_argument("--spill-mb", type=int, nargs="+", default=[1024, 100000],
                    help="DERAIN_SPILL_MB per run (default: 1024, today's default, and 100000: all in memory)")
    ap.add_argument("--threads", default="2")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.child:
        child(args.model, w, h, args.child[1])
        return 0
    import numpy as np

    from derain_core.metrics import psnr

    first = None
    print(f"{args.model} at {w}x{h}, 512-px tiles, {args.threads} threads, one fresh process per run")
    for mb in args.spill_mb:
        out = f"/tmp/tiled_memory_{os.getpid()}_{mb}.json"
        env = {**os.environ, "DERAIN_SPILL_MB": str(mb), "OMP_NUM_THREADS": args.threads}
        subprocess.run([sys.executable, __file__, args.model, "--size", args.size, "--child", str(mb), out],
                       env=env, check=True, cwd=ROOT)
        r = json.loads(Path(out).read_text())
        y = np.load(out + ".npy")
        first = y if first is None else first
        same = psnr(y, first)
        Path(out).unlink()
        Path(out + ".npy").unlink()
        print(f"  spill above {mb:6d} MB: resident {r['before_mb']:6.0f} MB before, peak {r['peak_mb']:6.0f} MB "
              f"(+{r['peak_mb'] - r['before_mb']:.0f}); estimate {r['estimate_ram_mb']:.0f} MB in memory + "
              f"{r['estimate_disk_mb']:.0f} MB in files; {r['seconds']:.1f} s; PSNR against the first run "
              f"{same:.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
