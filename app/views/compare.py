"""Compare page: every model on one image, metrics on each tile, synchronized zoom, before/after."""
from __future__ import annotations

import functools

import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

import dashboard_ui as ui
from derain_core import compare
from derain_core import dashboard_data as dd
from derain_core import report, viz

st.title("Compare the models")
st.caption("Five published single-image deraining networks in one PyTorch core (`derain_core`). Upload a "
           "rainy photo or pick an example and run them: each output appears as its model finishes. Then "
           "zoom into the same spot of every output and wipe between before and after. Models without "
           "shipped weights run with random weights and are marked *untrained*.")

with st.container(border=True):
    img, gt = ui.input_picker("cmp")
    c1, c2 = st.columns([3, 1])
    with c1:
        models = ui.model_picker("cmp_models")
    with c2:
        variant = ui.variant_picker("cmp_variant")
    full_res = ui.full_resolution_toggle("cmp_full_res")
    r1, r2 = st.columns([1, 4], vertical_alignment="center")
    with r1:
        run = st.button("Run", type="primary", key="cmp_run", disabled=img is None or not models)
    with r2:
        ui.estimate_caption(img, models, full_res)

if img is None:
    st.info("Choose an example or upload a rainy image to start.")
    st.stop()

key = ui.image_key(img, gt)
photo_key = ui.image_key(img)  # the maps looked at on the Inspect page belong to the photo alone
if run:
    try:
        upload = compare.prepare(img, gt, models, variant, max_side=ui.max_side(full_res))
    except compare.UploadError as exc:
        st.error(str(exc))
        st.stop()
    # Kept in the session as each model finishes: a cancelled run keeps what it produced.
    running = st.session_state["cmp"] = {"key": key, "photo_key": photo_key, "results": [], "upload": upload,
                                         "input_metrics": upload.input_metrics, "complete": False}
    st.session_state.pop("cmp_point", None)
    live = st.empty()  # each result the moment its model finishes

    def _show_so_far(results: list) -> None:
        running["results"] = results
        with live.container():
            st.caption(ui.finished_text(results, len(upload.models)))
            ui.show_image(ui.results_grid(upload.image, upload.gt, results, upload.input_metrics,
                                          caption=upload.size_note))

    ui.run_models(upload, "cmp_cancel", on_result=_show_so_far)
    running["complete"] = True
    live.empty()
elif st.session_state.get("cmp_cancel"):
    st.info("Run cancelled: the models that finished are shown below.")

state = st.session_state.get("cmp")
if not state or state["key"] != key:
    ui.show_image(ui.display(img.rgb), caption=f"{img.name}: {img.width}x{img.height}"
                  + (" (with ground truth)" if gt is not None else " (no ground truth: no-reference metrics only)"))
    st.info("Press **Run** to derain this image with the selected models.")
    st.stop()

results = state["results"]
if not results:
    st.error("No model produced an output." if state.get("complete", True) else
             "The run was cancelled before the first model finished.")
    st.stop()
input_metrics = state["input_metrics"]
upload = state["upload"]
img, gt = upload.image, upload.gt  # what the models saw: the working copy of a downscaled run
note = upload.size_note
ui.untrained_note(results)

# ---- the grid with metric overlays and the table --------------------------------------
st.subheader("Outputs")
if note:
    st.info(f"{note.capitalize()}: every output, crop and metric below is at that size. "
            "Turn on *Full resolution* and run again for the photo's own size.")
show = st.radio("Show", viz.SHOW_CHOICES, horizontal=True, key="cmp_show",
                help="each model's output, or what it removed (input minus output on mid-grey), "
                     "at true scale or amplified; the before/after below follows")
ui.show_image(ui.results_grid(img, gt, results, input_metrics, caption=note, show=show))
st.dataframe(ui.metrics_frame(results, input_metrics), hide_index=True)
st.markdown(ui.details_line(results))
st.caption(report.METRICS_NOTE)
with st.expander(report.EXPECTATIONS_TITLE):
    st.markdown(report.expectations_markdown(report.expectations((r.model_id, r.variant) for r in results)))
if any(r.tile for r in results):
    st.caption("Large image: the engine tiled it (overlapping tiles with blended seams).")

# ---- click-to-zoom: the same crop from every image -------------------------------------
st.subheader("Zoom: click a point")
h, w = img.height, img.width
zc1, zc2 = st.columns([1, 1])
with zc1:
    crop = st.slider("Crop size (px)", 8, max(8, min(128, h, w)), min(48, h, w), key="cmp_crop")
with zc2:
    zoom = st.select_slider("Zoom (nearest neighbour)", [1, 2, 3, 4, 6, 8], value=4, key="cmp_zoom")
point = st.session_state.get("cmp_point", (w // 2, h // 2))
shown = ui.display(viz.mark_point(img.rgb, point, crop), min_side=320)
click = streamlit_image_coordinates(shown, key="cmp_click", width=shown.shape[1])
new_point = dd.click_to_native(click, (h, w))
if new_point is not None and new_point != point:
    st.session_state["cmp_point"] = point = new_point
    st.rerun()
st.caption(upload.caption(f"Crop of {crop} px around (x={point[0]}, y={point[1]}), enlarged exactly x{zoom} "
                          "(nearest neighbour; each crop at its own size, wrapping to the screen)") + ".")
pieces = compare.crop_images(upload, results, point, crop, zoom)
ui.show_images(pieces)

# ---- before / after: a slider that runs in the browser (no rerun while dragging) -----------
st.subheader("Before / after")
with st.columns([1, 2])[0]:
    pick = st.selectbox("Output", range(len(results)), format_func=lambda i: results[i].label, key="cmp_ba_model")
right, view_note = viz.changed_view(img.rgb, results[pick].output, show)
before, after = ui.display(img.rgb, min_side=320), ui.display(right, min_side=320)
shown = viz.view_label(results[pick].label, show)
ui.before_after_slider(before, after, "input", shown)
st.caption(" ".join(t for t in (upload.caption(f"Drag the divider: input left of the line, {shown} right; "
                                               "blend fades one into the other") + ".", view_note) if t))

# ---- download ---------------------------------------------------------------------------
# Built on click (on another thread): everything it needs is bound now.
st.download_button("Download outputs, removed rain, crops, maps viewed and metrics (zip)",
                   functools.partial(report.zip_bytes, results, img, gt, {"app": "streamlit", **upload.size_info()},
                                     zoom=report.ZoomCrop(point, crop, zoom), maps=ui.viewed_maps(photo_key)),
                   file_name=report.zip_name(img.name), mime="application/zip", key="cmp_zip",
                   help="Built when you click: input, ground truth, every output and what it removed, the "
                        "zoom crops above, the maps you looked at on the Inspect page, metrics as CSV and JSON.")
