"""Reporting helpers shared by the apps: metric formatting, the metrics table, CSV/JSON and
the results zip.

Everything takes :class:`~derain_core.engine.ModelResult` objects as the engine returns them;
nothing here runs a model or computes a metric.
"""
from __future__ import annotations

import csv
import io as _io
import json
import math
import re
import zipfile
from typing import Any, Sequence


from . import io
from .engine import ModelResult

# Known metric keys in display order, with their column names (arrows: which way is better).
METRIC_COLUMNS: dict[str, str] = {
    "psnr_rgb": "PSNR RGB (dB) ↑",
    "psnr_y": "PSNR Y (dB) ↑",
    "ssim_rgb": "SSIM RGB ↑",
    "ssim_y": "SSIM Y ↑",
    "delta_e": "ΔE76 ↓",
    "niqe": "NIQE ↓",
    "piqe": "PIQE ↓",
}
_DIGITS = {"psnr_rgb": 2, "psnr_y": 2, "ssim_rgb": 4, "ssim_y": 4, "delta_e": 2, "niqe": 2, "piqe": 1}

METRICS_NOTE = ("PSNR/SSIM against the ground truth on RGB and on the BT.601 Y channel "
                "(MATLAB rgb2ycbcr), data range 1, no border crop; NIQE uses this project's "
                "pristine model (n/a below 96 px per side); PIQE needs no trained parameters. "
                "Time is the forward pass only (padding and tiling included).")


def fmt_value(key: str, value: float | None) -> str:
    """One metric value as display text (``"n/a"`` for missing or NaN, ``"inf"`` for identical)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{_DIGITS.get(key, 3)}f}"


def metric_keys(results: Sequence[ModelResult]) -> list[str]:
    """Metric keys present in any result: known ones in display order, then others sorted."""
    present = {k for r in results for k in r.metrics}
    return [k for k in METRIC_COLUMNS if k in present] + sorted(present - set(METRIC_COLUMNS))


def tiling_text(result: ModelResult) -> str:
    """``"whole image"`` or ``"tiles of 512 px"``."""
    return "whole image" if not result.tile else f"tiles of {result.tile} px"


def tile_text(result: ModelResult | None = None, metrics: dict[str, float] | None = None,
              seconds: float | None = None) -> str:
    """The short text drawn on a result tile (time, PSNR/SSIM RGB and Y, NIQE/PIQE).

    Pass a result, or ``metrics`` (and optionally ``seconds``) for the input image.
    """
    if result is not None:
        metrics, seconds = result.metrics, result.seconds
    m = metrics or {}
    lines = []
    if "psnr_rgb" in m or "psnr_y" in m:
        lines.append(f"PSNR {fmt_value('psnr_rgb', m.get('psnr_rgb'))} / Y {fmt_value('psnr_y', m.get('psnr_y'))} dB")
        lines.append(f"SSIM {fmt_value('ssim_rgb', m.get('ssim_rgb'))} / Y {fmt_value('ssim_y', m.get('ssim_y'))}")
    last = []
    if seconds is not None:
        last.append(f"{seconds:.2f} s")
    if "niqe" in m:
        last.append(f"NIQE {fmt_value('niqe', m['niqe'])}")
    if "piqe" in m:
        last.append(f"PIQE {fmt_value('piqe', m['piqe'])}")
    if last:
        lines.append(" | ".join(last))
    return "\n".join(lines)


def result_record(result: ModelResult) -> dict[str, Any]:
    """One result as a flat dict of plain values (for CSV and JSON; NaN stays NaN)."""
    rec: dict[str, Any] = {"model": result.model_id, "label": result.label, "variant": result.variant,
                           "trained": result.trained, "seconds": round(result.seconds, 4),
                           "device": result.device, "precision": result.precision,
                           "tile": result.tile or ""}
    for k in metric_keys([result]):
        rec[k] = float(result.metrics[k])
    return rec


def metrics_table(results: Sequence[ModelResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the display table: model, time, metrics, device, precision, tiling."""
    keys = metric_keys(results)
    header = (["Model", "Weights", "Time (s)"] + [METRIC_COLUMNS.get(k, k) for k in keys]
              + ["Device", "Precision", "Tiling"])
    rows = []
    for r in results:
        rows.append([r.label, r.variant, f"{r.seconds:.3f}"] + [fmt_value(k, r.metrics.get(k)) for k in keys]
                    + [r.device, r.precision, tiling_text(r)])
    return header, rows


def csv_text(results: Sequence[ModelResult]) -> str:
    """All results as CSV (one row per model; every metric column present in any result)."""
    keys = metric_keys(results)
    fields = ["model", "label", "variant", "trained", "seconds", "device", "precision", "tile"] + keys
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow(result_record(r))
    return buf.getvalue()


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def run_summary(results: Sequence[ModelResult]) -> str:
    """One line on where and how the models ran: devices, precisions, tiling."""
    if not results:
        return ""
    devices = sorted({r.device for r in results})
    precisions = sorted({r.precision for r in results})
    tiles = sorted({tiling_text(r) for r in results})
    return (f"device {', '.join(devices)} · precision {', '.join(precisions)} · "
            f"{', '.join(tiles)}")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def zip_bytes(results: Sequence[ModelResult], image: io.LoadedImage, gt: io.LoadedImage | None = None,
              extra: dict[str, Any] | None = None) -> bytes:
    """A zip with ``input.png``, ``ground_truth.png`` (if given), ``outputs/<model>.png`` for
    every result, ``metrics.csv`` and ``metrics.json``.

    PNGs are lossless, 16-bit when the input was, with the input's alpha re-attached.
    ``extra`` is merged into ``metrics.json`` (e.g. the image name and app settings).
    """
    bits = 16 if image.bit_depth == 16 else 8
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("input.png", io.png_bytes(image.rgb, image.alpha, bits=bits))
        if gt is not None:
            zf.writestr("ground_truth.png", io.png_bytes(gt.rgb, gt.alpha, bits=16 if gt.bit_depth == 16 else 8))
        for r in results:
            zf.writestr(f"outputs/{r.model_id}.png", io.png_bytes(r.output, r.alpha, bits=bits))
        zf.writestr("metrics.csv", csv_text(results))
        doc = {"image": image.name, "size": [image.width, image.height],
               "ground_truth": gt.name if gt is not None else None, **(extra or {}),
               "metrics_note": METRICS_NOTE,
               "results": [{k: _json_safe(v) for k, v in result_record(r).items()} for r in results]}
        zf.writestr("metrics.json", json.dumps(doc, indent=2) + "\n")
    return buf.getvalue()

