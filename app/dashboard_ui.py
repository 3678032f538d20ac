"""Streamlit widgets shared by the dashboard's pages: layout and wiring only.

Every model, metric and drawing function comes from ``derain_core`` (runs and maps through
``derain_core.compare``, the same road the Gradio demo takes); this module only arranges
widgets and keeps results in ``st.session_state`` between reruns.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from derain_core import compare
from derain_core import dashboard_data as dd
from derain_core import io, report, viz
from derain_core.compare import ModelResult
from derain_core.io import LoadedImage

DEFAULT_VARIANT = "default weights"
DISPLAY_SIDE = 720  # longest side of pictures shown on screen (models and metrics see full size)


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------
def variant_arg(choice: str) -> str | None:
    """Selectbox choice -> the ``variant`` argument of ``compare.prepare``."""
    return None if choice == DEFAULT_VARIANT else choice


def variant_choices() -> list[str]:
    return [DEFAULT_VARIANT, *compare.variant_choices()]


def model_picker(key: str, multi: bool = True, default: Sequence[str] | None = None) -> Any:
    """Models to run (ids). Untrained models are marked as such in the labels. Single choice:
    ``default[0]`` when given, else the first model."""
    names = {m.id: m.label for m in compare.model_choices()}
    if multi:
        return st.multiselect("Models", list(names), default=list(default or names),
                              format_func=names.get, key=key)
    ids = list(names)
    index = ids.index(default[0]) if default and default[0] in ids else 0
    return st.selectbox("Model", ids, index=index, format_func=names.get, key=key)


def variant_picker(key: str) -> str | None:
    choice = st.selectbox("Weights", variant_choices(), key=key,
                          help="'default weights' uses each card's default variant; models without "
                               "shipped weights run with reproducible random weights, marked untrained.")
    return variant_arg(choice)


def untrained_note(results: Sequence[ModelResult]) -> None:
    names = [r.label for r in results if not r.trained]
    if names:
        st.warning("Untrained (random weights, no trained file shipped): " + ", ".join(names)
                   + ". Their outputs show the architecture only, not the paper's quality.")


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------
def show_image(img: Any, caption: str | None = None, width: Any = "content") -> None:
    """Lossless on-screen image, sent with the page as a PNG ``data:`` URL.

    Not through Streamlit's media store: it deletes a run's pictures when the next run ends, so a
    browser still fetching one (a page or model switched while it loaded) got a 404
    (streamlit/streamlit#4825). Inline, a picture lives as long as the element showing it.
    """
    st.image(dd.png_data_url(viz.to_uint8_image(img)), caption=caption, width=width)


def show_images(pieces: Sequence[tuple[str, Any]]) -> None:
    """Labelled pictures side by side, each at its own size, wrapping to the screen (as ``show_image``)."""
    st.image([dd.png_data_url(viz.to_uint8_image(p)) for _, p in pieces],
             caption=[label for label, _ in pieces], width="content")


def display(img: np.ndarray, side: int = DISPLAY_SIDE, min_side: int = 0) -> np.ndarray:
    """A uint8 copy no larger than ``side`` for the screen (tiny images enlarged towards ``min_side``)."""
    return compare.display_copy(img, side, min_side)[0]


def image_key(img: LoadedImage, gt: LoadedImage | None = None) -> str:
    """A short content hash identifying an input (and its ground truth)."""
    h = hashlib.sha1(np.ascontiguousarray(img.rgb).tobytes())
    if gt is not None:
        h.update(np.ascontiguousarray(gt.rgb).tobytes())
    return h.hexdigest()[:16]


@st.cache_data(show_spinner=False, max_entries=64)
def _load_path(path: str) -> LoadedImage:
    return compare.load_image(path)


def load_upload(upload: Any, what: str) -> LoadedImage | None:
    """Decode an uploaded file; a readable error in the page instead of a crash."""
    if upload is None:
        return None
    try:
        return compare.load_image(upload.getvalue(), what, name=upload.name)
    except compare.UploadError as exc:
        st.error(str(exc))
        return None


def input_picker(prefix: str, allow_gt: bool = True, shared: bool = True
                 ) -> tuple[LoadedImage | None, LoadedImage | None]:
    """Rainy image (and optional clean ground truth) from the examples or an upload.

    With ``shared``, the choice is remembered in ``st.session_state["current_input"]`` so that
    other pages can offer "the image from the Compare page".
    """
    examples = dd.load_examples()
    sources = ["Upload"]
    if examples:
        sources.insert(0, "Example")
    prev = st.session_state.get("current_input")
    if shared and prev is not None and prev[0] != prefix:
        sources.insert(0, "Same image as before")
    source = st.radio("Input", sources, horizontal=True, key=f"{prefix}_source")
    img = gt = None
    if source == "Example":
        titles = [e.title + ("" if e.has_gt else " (no ground truth)") for e in examples]
        i = st.selectbox("Example", range(len(examples)), format_func=titles.__getitem__,
                         key=f"{prefix}_example")
        ex = examples[i]
        img = _load_path(str(ex.file))
        gt = _load_path(str(ex.gt)) if ex.gt is not None else None
    elif source == "Upload":
        if not examples:
            st.caption("No bundled examples found (assets/examples/index.json); upload an image.")
        up = st.file_uploader("Rainy image", type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
                              key=f"{prefix}_upload")
        img = load_upload(up, "rainy image")
        if allow_gt:
            up_gt = st.file_uploader("Clean ground truth (optional: enables PSNR/SSIM)",
                                     type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
                                     key=f"{prefix}_upload_gt")
            gt = load_upload(up_gt, "ground truth")
    else:
        _, img, gt = prev
    if img is not None:
        try:
            compare.check_ground_truth(img, gt)
        except compare.UploadError as exc:
            st.error(f"{exc} Ignoring the ground truth.")
            gt = None
    if not allow_gt:
        gt = None
    if shared and img is not None and source != "Same image as before":
        st.session_state["current_input"] = (prefix, img, gt)
    return img, gt


# --------------------------------------------------------------------------------------
# Running models and showing results
# --------------------------------------------------------------------------------------
def full_resolution_toggle(key: str) -> bool:
    """Off (the default): photos larger than the core's working size are processed at that size."""
    return st.toggle("Full resolution (slower)", key=key,
                     help=f"Off: photos longer than {compare.WORKING_MAX_SIDE} px are processed at a "
                          f"{compare.WORKING_MAX_SIDE}-px copy (area-averaged; the ground truth too).")


def max_side(full_resolution: bool) -> int | None:
    """The ``max_side`` argument of ``compare.prepare`` for the toggle's state."""
    return None if full_resolution else compare.WORKING_MAX_SIDE


def estimate_caption(img: LoadedImage | None, models: Sequence[str], full_resolution: bool) -> None:
    """The expected time of the run the button would start (updates on every rerun)."""
    exp = compare.expected(img, models, full_resolution)
    if exp is not None:
        shrunk = "" if exp.processed_size == exp.original_size else \
            f" (downscaled from {exp.original_size[0]}x{exp.original_size[1]})"
        st.caption(f"Expected: {exp.text}{shrunk}")  # no emoji: fonts without it show a box


def model_names() -> dict[str, str]:
    """Model id -> display name (``"DSM-Net"``), for progress texts."""
    return {m.id: m.name for m in compare.model_choices()}


def run_models(upload: compare.Upload, cancel_key: str = "run_cancel",
               on_result: Callable[[list[ModelResult]], None] | None = None) -> list[ModelResult]:
    """Run the upload's models one after the other with a progress bar naming the model (per
    tile, with the time left, on full-resolution runs) and a Cancel button; failures are
    reported per model. ``on_result(results so far)`` is called as each model finishes, so a
    page can show every result the moment it exists. The bar and the button go when the run ends.

    Cancel (like any other widget) makes Streamlit rerun the page, which stops this run at its
    next progress update, that is before the next tile or model starts.
    """
    results: list[ModelResult] = []
    n = len(upload.models)
    first = model_names().get(upload.models[0], upload.models[0])
    bar = st.progress(0.0, text=f"Running {first} (1/{n})")
    slot = st.empty()  # the Cancel button, shown while the run lasts
    slot.button("Cancel", key=cancel_key, help="Stop the run before its next tile or model")
    for step in compare.run(upload, on_progress=lambda p: bar.progress(p.fraction, text=f"Running {p.text}")):
        if step.error:
            st.error(step.error)
        else:
            results.append(step.result)
            if on_result is not None:
                on_result(list(results))
    slot.empty()
    bar.empty()
    return results


def finished_text(results: Sequence[ModelResult], total: int) -> str:
    """``"2 of 5 models done: MSAMNet 1.9 s · DSM-Net 0.6 s"``."""
    done = " · ".join(f"{r.label} {r.seconds:.1f} s" for r in results)
    return f"{len(results)} of {total} models done" + (f": {done}" if done else "")


BEST_STYLE = "font-weight: bold; background-color: #dff3e4"  # the best value of a column


def metrics_frame(results: Sequence[ModelResult], input_metrics: dict[str, float] | None = None):
    """The metrics table from ``report.results_table``: the rainy input's row first, the best value
    of each metric column marked (bold on a light green, ``BEST_STYLE``); device, precision and
    tiling are in :func:`report.run_details`'s line, not columns. Returns a pandas Styler."""
    t = report.results_table(results, input_metrics)
    frame = pd.DataFrame(t.rows, columns=t.header)
    styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for i, j in t.best:
        styles.iat[i, j] = BEST_STYLE
    return frame.style.apply(lambda _: styles, axis=None)


def details_line(results: Sequence[ModelResult]) -> str:
    """The line under the metrics table: where and how the models ran, and what the mark means."""
    return f"**Ran on** {report.run_details(results)}. {report.BEST_NOTE}" if results else ""


def results_grid(img: LoadedImage, gt: LoadedImage | None, results: Sequence[ModelResult],
                 input_metrics: dict[str, float] | None, cols: int = 3, caption: str | None = None,
                 show: str = viz.SHOW_OUTPUT) -> np.ndarray:
    """Input, ground truth (if any) and every output (or what it removed, for ``show`` in
    ``viz.SHOW_CHOICES``), labelled, metrics drawn on each tile; ``caption`` (a downscaled run's
    size note) and the view's scale above the grid."""
    images = [display(img.rgb, 360, 240)]
    labels = ["rainy input"]
    texts = [report.tile_text(metrics=input_metrics)]
    if gt is not None:
        images.append(display(gt.rgb, 360, 240))
        labels.append("ground truth")
        texts.append("")
    for r in results:
        images.append(display(viz.changed_view(img.rgb, r.output, show)[0], 360, 240))
        labels.append(viz.view_label(r.label, show))
        texts.append(report.tile_text(r))
    caption = "; ".join(t for t in (caption, viz.show_note(show)) if t)
    return viz.labelled_grid(images, labels, texts, cols=min(cols, len(images)), caption=caption or None)


# --------------------------------------------------------------------------------------
# Maps viewed on the Inspect page, for the Compare page's zip
# --------------------------------------------------------------------------------------
VIEWED_MAPS_MAX = 24  # PNG pictures kept per session (the most recent)


def remember_map(photo_key: str, name: str, picture: np.ndarray) -> None:
    """Keep a map picture the user looked at (as PNG bytes) for the zip of the same photo;
    maps of another photo are dropped."""
    viewed = st.session_state.get("viewed_maps")
    if viewed is None or viewed[0] != photo_key:
        viewed = st.session_state["viewed_maps"] = (photo_key, {})
    maps = viewed[1]
    maps.pop(name, None)
    maps[name] = io.png_bytes(viz.to_uint8_image(picture))
    while len(maps) > VIEWED_MAPS_MAX:
        maps.pop(next(iter(maps)))


def viewed_maps(photo_key: str) -> dict[str, bytes]:
    """The maps of this photo looked at on the Inspect page (name -> PNG bytes)."""
    viewed = st.session_state.get("viewed_maps")
    return dict(viewed[1]) if viewed is not None and viewed[0] == photo_key else {}


# --------------------------------------------------------------------------------------
# Before/after slider (runs in the browser) and phone navigation
# --------------------------------------------------------------------------------------
def before_after_slider(before: np.ndarray, after: np.ndarray, before_label: str, after_label: str) -> None:
    """The core's HTML before/after slider (``dd.before_after_html``) in an iframe sized to its
    content: dragging it never reruns the page."""
    st.iframe(dd.before_after_html(before, after, before_label, after_label), height="content")


# Streamlit closes the sidebar after a page is chosen only when the browser says it is a phone
# (its user agent); a narrow desktop window or an emulator keeps it open over the page. This
# closes it on narrow screens (below Streamlit's 768-px mobile breakpoint) once the click has
# had its effect, and only if it is still open.
_CLOSE_SIDEBAR_JS = """<script>
(function(){
 if (window.__derainNavHook) return; window.__derainNavHook = true;
 document.addEventListener("click", function(e){
  if (!e.target.closest || !e.target.closest('[data-testid="stSidebarNav"] a')) return;
  if (window.innerWidth >= 768) return;
  setTimeout(function(){
   const bar = document.querySelector('[data-testid="stSidebar"]');
   const close = document.querySelector('[data-testid="stSidebarCollapseButton"] button');
   if (bar && bar.getAttribute("data-collapsed") === "false" && close) close.click();
  }, 250);
 }, true);
})();
</script>"""


def close_sidebar_after_navigation() -> None:
    st.html(_CLOSE_SIDEBAR_JS, unsafe_allow_javascript=True)
