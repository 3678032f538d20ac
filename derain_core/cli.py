"""The ``derain`` command: models, run, eval, bench, train.

Errors a user can cause (bad files, unknown models, missing folders) print one line on
stderr and exit with status 2; nothing prints a traceback unless ``DERAIN_DEBUG=1``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from .registry import model_ids


def _models_arg(values: Sequence[str] | None) -> list[str]:
    ids = []
    known = model_ids()
    for v in values or known:
        ids.extend(p for p in v.split(",") if p)
    unknown = [m for m in ids if m not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return ids


def _fmt(v: float | None, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{nd}f}"


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def _progress(iterable, **kw):
    try:
        from tqdm import tqdm
        return tqdm(iterable, file=sys.stderr, disable=not sys.stderr.isatty() and not kw.pop("force", False), **kw)
    except ImportError:  # pragma: no cover
        return iterable


# --------------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from . import weights as wts
    from .registry import list_models
    from .stats import model_stats

    rows = []
    for card in list_models():
        st = model_stats(card.id)
        variants = wts.available_variants(card.id)
        measured = []
        for v in variants:
            c = wts.read_card(card.id, v) or {}
            m = c.get("metrics", {}).get("rain100l_test") or {}
            if "psnr_y" in m:
                measured.append(f"{v}: {m['psnr_y']:.2f} dB Y")
        rows.append([card.id, card.name, f"{card.venue.split(' (')[0][:32]} {card.year}",
                     card.predicts,
                     f"{st['params'] / 1e6:.3f} M", f"{st['macs'] / 1e9:.0f} G",
                     ", ".join(variants) or "untrained", "; ".join(measured) or "-"])
    _print_table(["id", "name", "venue", "predicts", "params", "MACs@512", "weights", "measured (Rain100L test)"], rows)
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from . import settings

    rows = []
    for r in settings.describe():
        value = r["value"]
        value = ("(malformed)" if r["error"] else "-" if value is None
                 else ("on" if value else "off") if isinstance(value, bool) else str(value))
        rows.append([r["name"], value + ("" if r["set"] else " (default)"), r["help"]])
    _print_table(["variable", "value", "meaning"], rows)
    for r in settings.describe():
        if r["error"]:
            print(f"derain: error: {r['error']}", file=sys.stderr)
    return 2 if any(r["error"] for r in settings.describe()) else 0


def _debug() -> bool:
    """DERAIN_DEBUG: tracebacks instead of one-line errors (a malformed value counts as on)."""
    from . import settings

    try:
        return bool(settings.get("DERAIN_DEBUG"))
    except settings.SettingError:
        return True


def _write_maps(result, out_dir: Path, image_rgb, stretch: bool = False) -> int:
    from . import io, viz

    count = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in result.map_specs:
        t = result.maps.get(spec.key)
        if t is None:
            continue
        img = viz.render_map(t, spec, stretch=stretch)
        io.save_png(out_dir / f"{spec.key}.png", img)
        count += 1
    return count


def cmd_run(args: argparse.Namespace) -> int:
    from . import io
    from .compare import size_note
    from .engine import iter_derain

    models = _models_arg(args.models)
    if args.max_side is not None and args.max_side < 16:
        raise ValueError(f"--max-side must be at least 16 px, got {args.max_side}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gt = io.load_image(args.gt) if args.gt else None
    if gt is not None and args.max_side:
        gt = io.downscale_image(gt, args.max_side)  # the same rule as the photo: the same grid
    rows = []
    for path in args.images:
        img = io.load_image(path)
        original = (img.width, img.height)
        if args.max_side:
            img = io.downscale_image(img, args.max_side)
        note = size_note((img.width, img.height), original)
        stem = Path(path).stem
        if note:
            print(f"{stem}: {note}")
        for r in _progress(iter_derain(img, models, args.variant, gt, args.maps, tile=args.tile),
                           total=len(models), desc=stem, unit="model"):
            out_path = out / f"{stem}_{r.model_id}.png"
            io.save_png(out_path, r.output, alpha=r.alpha, bits=16 if args.bits16 else 8)
            row = {"image": str(path), "model": r.model_id, "variant": r.variant, "trained": r.trained,
                   "seconds": round(r.seconds, 4), "device": r.device, "precision": r.precision,
                   "tile": r.tile or "", "processed_size": f"{img.width}x{img.height}",
                   "original_size": f"{original[0]}x{original[1]}", "output": str(out_path),
                   **{k: round(v, 4) for k, v in r.metrics.items()}}
            if args.maps and r.maps is not None:
                n = _write_maps(r, out / "maps" / f"{stem}_{r.model_id}", img.rgb, args.stretch_attention)
                row["maps"] = n
                row["maps_note"] = r.maps_note
            rows.append(row)
            print(f"{stem}  {r.label:<24} {r.seconds:7.2f} s  " +
                  "  ".join(f"{k}={_fmt(v)}" for k, v in r.metrics.items()))
    _write_rows(rows, out / "metrics.csv", out / "metrics.json")
    print(f"wrote {len(rows)} outputs, metrics.csv and metrics.json to {out}")
    return 0


def _write_rows(rows: list[dict], csv_path: Path | None, json_path: Path | None) -> None:
    if csv_path and rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2, default=str) + "\n")


def cmd_eval(args: argparse.Namespace) -> int:
    from . import io, metrics as mt
    from .data import find_pairs
    from .engine import derain_one

    models = [] if args.models == [] else _models_arg(args.models)  # bare --models: input baseline only
    pairs = find_pairs(args.data)
    if args.limit:
        pairs = pairs[: args.limit]
    per_image, summary = [], []
    for model_id in models:
        vals = []
        for rainy, clean in _progress(pairs, desc=model_id, unit="img"):
            img, gt = io.load_image(rainy), io.load_image(clean)
            r = derain_one(img, model_id, args.variant, metrics=False, tile=args.tile)
            m = {"psnr_rgb": mt.psnr(r.output, gt.rgb), "ssim_rgb": mt.ssim(r.output, gt.rgb),
                 "psnr_y": mt.psnr(r.output, gt.rgb, on="y"), "ssim_y": mt.ssim(r.output, gt.rgb, on="y")}
            vals.append(m)
            per_image.append({"model": model_id, "variant": r.variant, "image": Path(rainy).name,
                              "seconds": round(r.seconds, 4), **{k: round(v, 4) for k, v in m.items()}})
        mean = {k: sum(v[k] for v in vals) / len(vals) for k in vals[0]}
        summary.append({"model": model_id, "variant": r.variant, "images": len(vals),
                        **{k: round(v, 4) for k, v in mean.items()}})
    if args.input_baseline:
        vals = []
        for rainy, clean in pairs:
            img, gt = io.load_image(rainy), io.load_image(clean)
            vals.append({"psnr_rgb": mt.psnr(img.rgb, gt.rgb), "ssim_rgb": mt.ssim(img.rgb, gt.rgb),
                         "psnr_y": mt.psnr(img.rgb, gt.rgb, on="y"), "ssim_y": mt.ssim(img.rgb, gt.rgb, on="y")})
        summary.append({"model": "rainy input", "variant": "-", "images": len(vals),
                        **{k: round(sum(v[k] for v in vals) / len(vals), 4) for k in vals[0]}})
    _print_table(["model", "variant", "images", "PSNR RGB", "SSIM RGB", "PSNR Y", "SSIM Y"],
                 [[s["model"], s["variant"], s["images"], _fmt(s["psnr_rgb"]), _fmt(s["ssim_rgb"], 4),
                   _fmt(s["psnr_y"]), _fmt(s["ssim_y"], 4)] for s in summary])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_rows(per_image, out / "eval_per_image.csv", None)
    _write_rows(summary, out / "eval_summary.csv", out / "eval_summary.json")
    print(f"wrote eval_per_image.csv and eval_summary.csv/json to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench import bench, machine_info, matmul_peak_gflops, rows_as_dicts

    if args.threads:
        torch.set_num_threads(args.threads)
    models = _models_arg(args.models)
    info = machine_info()
    dev = torch.device(args.device) if args.device else None
    print(f"# {info}")
    if args.train:
        return _bench_train(args, models, info)

    def show(r):
        print(f"{r.model_id:<8} {r.size:>9}  {r.precision:<4} fast {r.fast_s:7.3f} s  "
              f"ref {_fmt(r.reference_s, 3):>7} s  x{_fmt(r.speedup)}  {r.macs_g:7.1f} GMAC  "
              f"{r.gflops:7.1f} GFLOP/s  peak {r.peak_mb:7.0f} MB  fast-vs-ref {_fmt(r.psnr_vs_reference)} dB",
              flush=True)

    rows = bench(models, args.sizes, args.repeats, not args.no_reference, args.device, progress=show)
    from .engine import cpu_has_native_bf16, default_device
    device = dev or default_device()
    peak32 = matmul_peak_gflops(device, torch.float32)
    has_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    peak16 = matmul_peak_gflops(device, torch.bfloat16) if has_bf16 else None
    print(f"# measured matmul peak: fp32 {peak32:.0f} GFLOP/s" + (f", bf16 {peak16:.0f} GFLOP/s" if peak16 else ""))
    for size in args.sizes:
        sel = [r for r in rows if r.size == size]
        tot_fast = sum(r.fast_s for r in sel)
        tot_ref = sum(r.reference_s for r in sel) if not args.no_reference else None
        flops = sum(2 * r.macs_g for r in sel)
        line = f"TOTAL    {size:>9}  fast {tot_fast:7.3f} s"
        if tot_ref:
            line += f"  ref {tot_ref:7.3f} s  x{tot_ref / tot_fast:.2f}"
        line += f"  {flops / tot_fast:7.1f} GFLOP/s = {flops / tot_fast / peak32:.0%} of fp32 matmul peak"
        if peak16:
            line += f" ({flops / tot_fast / peak16:.0%} of bf16 peak)"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "matmul_peak_gflops_fp32": peak32,
                                               "matmul_peak_gflops_bf16": peak16,
                                               "rows": rows_as_dicts(rows)}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _bench_train(args: argparse.Namespace, models: list[str], info: dict) -> int:
    """``derain bench --train``: training steps, current path against the baseline, one run."""
    import torch

    from .bench import matmul_peak_gflops, train_bench
    from .engine import cpu_has_native_bf16, default_device

    device = torch.device(args.device) if args.device else default_device()
    peak32 = matmul_peak_gflops(device, torch.float32)
    has_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    peak16 = matmul_peak_gflops(device, torch.bfloat16) if has_bf16 else None
    print(f"# measured matmul peak: fp32 {peak32:.0f} GFLOP/s" + (f", bf16 {peak16:.0f} GFLOP/s" if peak16 else ""))
    print(f"# training step: batch {args.batch} of {args.patch}x{args.patch}, forward + loss + backward + Adam; "
          f"median of {args.steps} after two warm-up steps; each row in a fresh process, allocator as derain train sets it")

    def show(r):
        r.frac_fp32_peak = r.gflops / peak32
        r.frac_bf16_peak = r.gflops / peak16 if peak16 else None
        print(f"{r.model_id:<8} {r.path:<8} {r.precision:<4} {r.sec_per_step:7.3f} s/step  "
              f"{r.samples_per_s:7.1f} samples/s  {r.gflops:7.1f} GFLOP/s = {r.frac_fp32_peak:4.0%} fp32 / "
              f"{_fmt(r.frac_bf16_peak and 100 * r.frac_bf16_peak, 0)}% bf16 peak  peak {r.peak_mb:6.0f} MB"
              + ("" if r.compile_s is None else f"  first step +{r.compile_s:5.1f} s"), flush=True)

    paths = ("baseline", "current", "compiled") if args.compile else ("baseline", "current")
    rows = train_bench(models, args.batch, args.patch, args.steps, args.device, paths=paths, progress=show)
    by = {(r.model_id, r.path): r for r in rows}
    for m in models:
        if (m, "baseline") in by and (m, "current") in by:
            print(f"SPEEDUP  {m:<8} x{by[m, 'baseline'].sec_per_step / by[m, 'current'].sec_per_step:.2f} "
                  "samples/s, current against baseline")
        if (m, "compiled") in by and (m, "current") in by:
            c, cur = by[m, "compiled"], by[m, "current"]
            saved = cur.sec_per_step - c.sec_per_step
            payback = f"pays back after {c.compile_s / saved:.0f} steps" if saved > 0 else "never pays back"
            print(f"COMPILE  {m:<8} x{cur.sec_per_step / c.sec_per_step:.2f} samples/s, compiled against "
                  f"current; compiling took {c.compile_s:.0f} s, {payback}")
    if args.json:
        from dataclasses import asdict
        Path(args.json).write_text(json.dumps({"machine": info, "matmul_peak_gflops_fp32": peak32,
                                               "matmul_peak_gflops_bf16": peak16, "batch": args.batch,
                                               "patch": args.patch, "rows": [asdict(r) for r in rows]},
                                              indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="derain", description="Compare five single-image deraining networks.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="table of the model cards").set_defaults(func=cmd_models)
    sub.add_parser("settings", help="the DERAIN_* environment variables, their values and meaning"
                   ).set_defaults(func=cmd_settings)

    r = sub.add_parser("run", help="derain images with the models, write outputs and metrics")
    r.add_argument("images", nargs="+", help="image files")
    r.add_argument("--models", nargs="*", help="model ids (default: all five)")
    r.add_argument("--variant", help="weights variant (default: each card's default)")
    r.add_argument("--gt", help="clean ground truth for PSNR/SSIM (one image runs)")
    r.add_argument("--out", default="out", help="output folder (default: out)")
    r.add_argument("--maps", action="store_true", help="also write every intermediate map as PNG")
    r.add_argument("--stretch-attention", action="store_true",
                   help="with --maps: colour attention maps between their 1st and 99th percentile, not 0 to 1")
    r.add_argument("--tile", type=int, default=None, help="tile side (0 = never tile; default: auto)")
    r.add_argument("--bits16", action="store_true", help="write 16-bit PNGs")
    r.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="derain a copy whose longer side is at most N px (area-averaged; the ground truth "
                        "shrinks the same way); default: full resolution")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="PSNR/SSIM (RGB and Y) on a paired folder")
    e.add_argument("--data", required=True, help="folder with rainy/ + clean/ or rain-NNN/norain-NNN pairs")
    e.add_argument("--models", nargs="*", help="model ids (default: all five; bare --models: none)")
    e.add_argument("--variant")
    e.add_argument("--limit", type=int, default=0, help="only the first N pairs")
    e.add_argument("--tile", type=int, default=0, help="tile side (default 0: whole images)")
    e.add_argument("--out", default="out/eval")
    e.add_argument("--input-baseline", action="store_true", help="also score the rainy input itself")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="latency, GFLOP/s, memory; fast path vs reference path")
    b.add_argument("--models", nargs="*")
    b.add_argument("--sizes", nargs="*", default=["481x321", "1024x768"])
    b.add_argument("--repeats", type=int, default=1)
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--device", default=None)
    b.add_argument("--no-reference", action="store_true", help="skip the reference path")
    b.add_argument("--json", help="also write the numbers as JSON to this file")
    b.add_argument("--train", action="store_true",
                   help="time training steps instead (current training path against the baseline)")
    b.add_argument("--batch", type=int, default=8, help="with --train: batch size (default %(default)s)")
    b.add_argument("--patch", type=int, default=64, help="with --train: crop size (default %(default)s)")
    b.add_argument("--steps", type=int, default=5, help="with --train: timed steps (default %(default)s)")
    b.add_argument("--compile", action="store_true",
                   help="with --train: also time the step under torch.compile (derain train --compile)")
    b.set_defaults(func=cmd_bench)

    try:
        from .train import add_train_arguments, run_train
        t = sub.add_parser("train", help="train a model on a paired folder")
        add_train_arguments(t)
        t.set_defaults(func=lambda a: run_train(a))
    except ImportError:  # pragma: no cover - training module missing
        pass
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None and args.command == "train":  # the real command line, not a test's call
        from .engine import reexec_with_hugepages
        reexec_with_hugepages()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, IsADirectoryError, PermissionError, OSError,
            MemoryError) as exc:
        if _debug():
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"derain: error: {msg.strip(chr(39)).strip(chr(34))}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: still one line, but say so
        if _debug():
            raise
        print(f"derain: internal error ({type(exc).__name__}): {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(set DERAIN_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
