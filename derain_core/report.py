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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import io, viz
from .engine import UNTRAINED, ModelResult

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


# --------------------------------------------------------------------------------------
# The apps' comparison table: the rainy input's row, best values marked, run details apart
# --------------------------------------------------------------------------------------
INPUT_LABEL = "rainy input"
BEST_NOTE = ("**Bold**: the best value of each column (↑ higher is better, ↓ lower is better); "
             "the rainy input competes too, so a model that made a score worse shows it.")


def higher_is_better(key: str) -> bool | None:
    """Which way a metric is better, read from its column's arrow: True (↑), False (↓), None (unknown)."""
    column = METRIC_COLUMNS.get(key, "")
    return True if column.endswith("↑") else False if column.endswith("↓") else None


def best_rows(metrics: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, set[int]]:
    """For each of ``keys`` with a known direction (:func:`higher_is_better`), the indices of the
    rows of ``metrics`` holding the best value as displayed (equal displayed values all count).

    A missing or NaN value never wins; a column gets no mark when fewer than two rows have a
    value or when every row shows the same value (nothing to choose between).
    """
    best: dict[str, set[int]] = {}
    for k in keys:
        higher = higher_is_better(k)
        if higher is None:
            continue
        shown = {}
        for i, m in enumerate(metrics):
            v = m.get(k)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            shown[i] = float(fmt_value(k, float(v)))  # "inf" parses as inf
        if len(shown) < 2 or len(set(shown.values())) < 2:
            continue
        top = max(shown.values()) if higher else min(shown.values())
        best[k] = {i for i, v in shown.items() if v == top}
    return best


@dataclass(frozen=True)
class MetricsTable:
    """The displayed table: ``header``, ``rows`` of text and the ``best`` cells as (row, column)."""

    header: list[str]
    rows: list[list[str]]
    best: frozenset[tuple[int, int]]


def results_table(results: Sequence[ModelResult], input_metrics: Mapping[str, float] | None = None
                  ) -> MetricsTable:
    """The apps' metrics table: the rainy input's own metrics as the first row (when given, time
    and weights "-"), then one row per result: model, weights, time and every metric present.

    ``best`` marks the best value of every metric column with a direction (:func:`best_rows`,
    the input's row included). Device, precision and tiling are not columns: they are one line,
    :func:`run_details`.
    """
    present = {k for r in results for k in r.metrics} | set(input_metrics or {})
    keys = [k for k in METRIC_COLUMNS if k in present] + sorted(present - set(METRIC_COLUMNS))
    header = ["Model", "Weights", "Time (s)"] + [METRIC_COLUMNS.get(k, k) for k in keys]
    rows, values = [], []
    if input_metrics is not None:
        rows.append([INPUT_LABEL, "-", "-"] + [fmt_value(k, input_metrics.get(k)) for k in keys])
        values.append(input_metrics)
    for r in results:
        rows.append([r.label, r.variant, f"{r.seconds:.3f}"] + [fmt_value(k, r.metrics.get(k)) for k in keys])
        values.append(r.metrics)
    best = frozenset((i, 3 + keys.index(k)) for k, winners in best_rows(values, keys).items() for i in winners)
    return MetricsTable(header, rows, best)


def run_details(results: Sequence[ModelResult]) -> str:
    """Device, precision and tiling in one line: the value most models share, and the models that
    differ in brackets (``"cpu · fp32 (MFAN: bf16) · whole image"``); ``""`` without results."""
    if not results:
        return ""
    parts = []
    for get in (lambda r: r.device, lambda r: r.precision, tiling_text):
        values = [get(r) for r in results]
        common = max(values, key=values.count)
        odd = [f"{r.label}: {v}" for r, v in zip(results, values) if v != common]
        parts.append(common + (f" ({', '.join(odd)})" if odd else ""))
    return " · ".join(parts)


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


# --------------------------------------------------------------------------------------
# What to expect from the shipped weights (read from their cards, never written here)
# --------------------------------------------------------------------------------------
EXPECTATIONS_TITLE = "How the shipped weights were trained and how they score"
EXPECTATIONS_NOTE = ("From each model's weight card (weights/*.json): the training budget, and PSNR-Y / SSIM-Y "
                     "(higher is better) on the test set, which training never saw. New weights bring their "
                     "own card, and these lines follow.")


def duration_text(seconds: float) -> str:
    """``"2 h 24 min"``, ``"14 min"`` or ``"45 s"``."""
    s = int(round(float(seconds)))
    if s < 60:
        return f"{s} s"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m} min" if h else f"{m} min"


def _device_name(name: Any) -> str:
    return re.sub(r"\((R|TM)\)", "", str(name)).strip()


def _devices_text(card: Mapping[str, Any]) -> str:
    """Where a card's chunks ran: ``"CPU (AMD EPYC, Intel Xeon Processor; 2 threads)"``."""
    chunks = card.get("chunks") or [card]
    kinds: dict[str, tuple[list[str], list[int]]] = {}
    for c in chunks:
        names, threads = kinds.setdefault(str(c.get("device_type") or "unknown device"), ([], []))
        if c.get("device") and _device_name(c["device"]) not in names:
            names.append(_device_name(c["device"]))
        if c.get("threads") and int(c["threads"]) not in threads:
            threads.append(int(c["threads"]))
    parts = []
    for kind, (names, threads) in kinds.items():
        inside = ", ".join(names)
        if kind == "cpu" and threads:
            inside += f"; {'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}"
        label = {"cpu": "CPU", "cuda": "GPU"}.get(kind, kind)
        parts.append(f"{label} ({inside})" if inside else label)
    return " and ".join(parts)


def training_text(card: Mapping[str, Any]) -> str:
    """A card's training budget: ``"trained 7,600 steps (2 h 24 min in 2 chunks) on CPU (...)"``,
    and for weights trained on from another variant's (``fine_tuned_from``), which and how far
    those had been trained."""
    steps = card.get("total_steps_all_chunks", card.get("steps"))
    wall = card.get("total_wall_time_s", card.get("wall_time_s"))
    n = int(card.get("n_chunks") or 1)
    text = f"trained {int(steps):,} steps" if steps is not None else "trained for an unrecorded number of steps"
    budget = [duration_text(wall)] if wall else []
    if n > 1:
        budget.append(f"{'in' if wall else ''} {n} chunks".strip())
    if budget:
        text += f" ({' '.join(budget)})"
    devices = _devices_text(card)
    text = f"{text} on {devices}" if devices else text
    base = card.get("fine_tuned_from")  # e.g. heavy weights trained on from the rain100l ones
    if isinstance(base, Mapping) and base.get("variant"):
        before = f" ({int(base['steps']):,} steps)" if base.get("steps") is not None else ""
        text = f"{text}, starting from the {base['variant']} weights{before}"
    return text


def _test_set(card: Mapping[str, Any], key: str) -> str:
    """The test set's name from the eval command (``--data .../Rain100L_test`` -> ``"Rain100L test"``)."""
    command = str(card.get("metrics", {}).get(key, {}).get("command", ""))
    found = re.search(r"--data\s+(\S+)", command)
    name = Path(found.group(1)).name if found else key
    return name.replace("_", " ")


def score_text(card: Mapping[str, Any], baseline: Mapping[str, float] | None = None,
               paper: tuple[float, float, str] | None = None) -> str:
    """A card's test score in words, with the rainy input's own score (``baseline``) and the
    paper's (``paper``: PSNR, SSIM, colour space) for reference when known."""
    key = f"{card.get('variant')}_test"
    m = card.get("metrics", {}).get(key)
    if not m or "psnr_y" not in m:
        return "not scored on a test set yet"
    images = f", {int(m['images'])} images" if m.get("images") else ""
    text = (f"{_test_set(card, key)}{images}: PSNR-Y {fmt_value('psnr_y', m['psnr_y'])} dB, "
            f"SSIM-Y {fmt_value('ssim_y', m.get('ssim_y'))}")
    if baseline and "psnr_y" in baseline:
        text += (f" (the rainy input itself: {fmt_value('psnr_y', baseline['psnr_y'])} dB, "
                 f"{fmt_value('ssim_y', baseline.get('ssim_y'))})")
    if paper:
        space = f" on {paper[2]}" if paper[2] in ("Y", "RGB") else ""
        text += f"; the paper reports {paper[0]:.2f} dB, {paper[1]:.3f}{space}"
    return text


@dataclass(frozen=True)
class Expectation:
    """What one model's weights promise: how they were trained and how they score."""

    model_id: str
    name: str
    variant: str
    text: str  # one plain-language line


def expectation(model_id: str, variant: str | None = None, results_root: str | Path | None = None) -> Expectation:
    """The :class:`Expectation` of ``model_id``'s weights ``variant`` (None: the default, and a
    variant it does not ship falls back as a run does), read from the shipped weight card, the
    rainy input's row in the committed results and the paper's numbers in the model card."""
    from . import dashboard_data
    from . import weights as wts
    from .engine import resolve_variant
    from .registry import get_card

    model = get_card(model_id)
    variant = resolve_variant(model_id, variant, strict=False)
    if variant == UNTRAINED:
        return Expectation(model_id, model.name, variant,
                           "random weights (no trained file shipped), so its output shows the architecture "
                           "only, not the method")
    card = wts.read_card(model_id, variant)
    if card is None:
        return Expectation(model_id, model.name, variant, "no weight card shipped: training and score unknown")
    dataset = _test_set(card, f"{variant}_test").removesuffix(" test")
    paper = next(((r.psnr, r.ssim, r.colour_space) for r in model.paper_results
                  if r.dataset.lower().replace(" ", "") == dataset.lower().replace(" ", "")), None)
    score = score_text(card, dashboard_data.input_baseline(variant, results_root), paper)
    return Expectation(model_id, model.name, variant, f"{training_text(card)}; {score}.")


def expectations(pairs: Iterable[tuple[str, str | None]], results_root: str | Path | None = None
                 ) -> list[Expectation]:
    """:func:`expectation` of each ``(model id, variant)`` (e.g. each result's, or each chosen
    model with ``None`` before a run)."""
    return [expectation(m, v, results_root) for m, v in pairs]


def expectations_markdown(items: Sequence[Expectation]) -> str:
    """The lines as a Markdown list under :data:`EXPECTATIONS_NOTE`."""
    lines = [f"- **{e.name}** ({'untrained' if e.variant == UNTRAINED else e.variant + ' weights'}): {e.text}"
             for e in items]
    return "\n".join([EXPECTATIONS_NOTE, "", *lines])


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


@dataclass(frozen=True)
class ZoomCrop:
    """The zoom of the last click: a ``size``-px crop around ``point`` ((x, y) in pixels of the
    processed photo) enlarged ``factor`` times, nearest neighbour."""

    point: tuple[float, float]
    size: int
    factor: int


def zip_name(image_name: str | None) -> str:
    """The results zip's file name: ``derain_<photo stem>.zip`` (``017.png`` -> ``derain_017.zip``)."""
    return f"derain_{safe_name(Path(image_name or '').stem)}.zip"


def _png(picture: Any) -> bytes:
    """A picture for the zip: PNG bytes or a PNG file's path are taken as they are, an array is encoded."""
    if isinstance(picture, (bytes, bytearray)):
        return bytes(picture)
    if isinstance(picture, (str, Path)):
        return Path(picture).read_bytes()
    return io.png_bytes(viz.to_uint8_image(picture))


def zip_bytes(results: Sequence[ModelResult], image: io.LoadedImage, gt: io.LoadedImage | None = None,
              extra: dict[str, Any] | None = None, zoom: ZoomCrop | None = None,
              maps: Mapping[str, Any] | None = None) -> bytes:
    """Everything of a run as one zip, all images PNG:

    * ``input.png``, ``ground_truth.png`` (if given), ``outputs/<model>.png`` for every result
      (lossless, 16-bit when the input was, with the input's alpha re-attached);
    * ``removed_rain/<model>.png``: input minus output at true scale (:func:`viz.removed_layer`,
      8-bit, mid-grey = unchanged; ``metrics.json`` states the scale and clipped share per model);
    * with ``zoom``: ``zoom/strip.png`` (the labelled crops side by side) and ``zoom/<image>.png``
      for the input, ground truth and every output, each crop enlarged ``zoom.factor`` times;
    * with ``maps`` (name -> picture: an array, PNG bytes or a PNG file's path): ``maps/<name>.png``;
    * ``metrics.csv`` and ``metrics.json`` (``extra`` merged into it, e.g. app settings).
    """
    bits = 16 if image.bit_depth == 16 else 8
    png = {"compress_type": zipfile.ZIP_STORED}  # PNG is compressed already
    removed_notes = {}
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("input.png", io.png_bytes(image.rgb, image.alpha, bits=bits), **png)
        if gt is not None:
            zf.writestr("ground_truth.png", io.png_bytes(gt.rgb, gt.alpha, bits=16 if gt.bit_depth == 16 else 8),
                        **png)
        for r in results:
            zf.writestr(f"outputs/{r.model_id}.png", io.png_bytes(r.output, r.alpha, bits=bits), **png)
        for r in results:
            layer, removed_notes[r.model_id] = viz.changed_view(image.rgb, r.output, "removed rain")
            zf.writestr(f"removed_rain/{r.model_id}.png", io.png_bytes(layer), **png)
        if zoom is not None:
            pictures = [image.rgb] + ([gt.rgb] if gt is not None else []) + [r.output for r in results]
            names = ["input"] + (["ground_truth"] if gt is not None else []) + [r.model_id for r in results]
            labels = ["input"] + (["ground truth"] if gt is not None else []) + [r.label for r in results]
            crops = viz.synced_crops(pictures, zoom.point, zoom.size, zoom.factor)
            for name, crop in zip(names, crops):
                zf.writestr(f"zoom/{name}.png", io.png_bytes(crop), **png)
            strip = viz.crops_strip(pictures, zoom.point, zoom.size, zoom.factor, labels=labels)
            zf.writestr("zoom/strip.png", io.png_bytes(strip), **png)
        for name, picture in (maps or {}).items():
            zf.writestr(f"maps/{safe_name(name)}.png", _png(picture), **png)
        zf.writestr("metrics.csv", csv_text(results))
        doc = {"image": image.name, "size": [image.width, image.height],
               "ground_truth": gt.name if gt is not None else None, **(extra or {}),
               "metrics_note": METRICS_NOTE,
               "results": [{k: _json_safe(v) for k, v in result_record(r).items()} for r in results],
               "removed_rain": removed_notes}
        if zoom is not None:
            doc["zoom"] = {"point": [float(v) for v in zoom.point], "crop": int(zoom.size), "factor": int(zoom.factor)}
        if maps:
            doc["maps"] = [f"maps/{safe_name(name)}.png" for name in maps]
        zf.writestr("metrics.json", json.dumps(doc, indent=2) + "\n")
    return buf.getvalue()
