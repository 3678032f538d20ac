"""Rain lab: add synthetic rain to a clean image, run the models on it, and measure how each
model's PSNR falls as the rain gets denser (a robustness curve)."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import dashboard_ui as ui
from derain_core import compare
from derain_core import dashboard_data as dd
from derain_core import metrics as mt
from derain_core import report, synth, viz

st.title("Rain lab")
st.caption("Start from a clean photo, add controllable synthetic rain (derain_core.synth), and see "
           "how the models cope. The clean image is the ground truth, so every number is a real PSNR.")

# ---- the clean image ---------------------------------------------------------------------
with st.container(border=True):
    cleans = dd.clean_images(dd.load_examples())
    sources = (["Bundled clean image"] if cleans else []) + ["Upload"]
    source = st.radio("Clean image", sources, horizontal=True, key="lab_source")
    clean_img = None
    if source == "Upload":
        up = st.file_uploader("Clean image", type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
                              key="lab_upload")
        clean_img = ui.load_upload(up, "clean image")
    else:
        i = st.selectbox("Image", range(len(cleans)), format_func=lambda k: cleans[k][0], key="lab_clean")
        clean_img = compare.load_image(cleans[i][1], "clean image")
    max_side = st.select_slider("Work at (longest side, px)", [64, 128, 256, 384, 512, 768], value=384,
                                key="lab_side", help="the image is area-downscaled to this size first")

if clean_img is None:
    st.info("No clean image yet: upload one (the bundled clean images come with the examples).")
    st.stop()
clean = compare.downscale(clean_img.rgb, max_side)

# ---- rain controls -----------------------------------------------------------------------
st.subheader("Rain")
p1, p2, p3 = st.columns(3)
with p1:
    preset_name = st.selectbox("Preset", list(synth.PRESETS), index=list(synth.PRESETS).index("heavy")
                               if "heavy" in synth.PRESETS else 0, key="lab_preset")
    base = synth.preset(preset_name)
    seed = st.number_input("Seed", 0, 10_000, 0, key="lab_seed")
with p2:
    density = st.slider("Density (x preset)", 0.1, 4.0, 1.0, 0.1, key="lab_density")
    length = st.slider("Streak length (x preset)", 0.3, 2.5, 1.0, 0.1, key="lab_length")
with p3:
    angle = st.slider("Angle (degrees from vertical, + leans right)", -45, 45,
                      int(round(base.dominant_angle())), key=f"lab_angle_{preset_name}")
    haze = st.slider("Haze", 0.0, 2.0, float(base.haze), 0.05, key=f"lab_haze_{preset_name}")
controls = dict(angle=float(angle), length_scale=float(length), haze=float(haze))
params = synth.preset(preset_name, seed=int(seed), density_scale=float(density), **controls)
rainy, layer = synth.add_rain(clean, params)
rain_psnr = mt.psnr(rainy, clean)
ui.show_image(viz.labelled_grid(
    [ui.display(clean, 360, 240), ui.display(rainy, 360, 240), ui.display(layer, 360, 240)],
    ["clean (ground truth)", "rainy", "rain layer"],
    ["", f"PSNR {rain_psnr:.2f} dB vs clean", f"energy {synth.rain_energy(layer):.4f}"]))
with st.expander("Generator parameters (JSON)"):
    st.json(params.to_dict())

# ---- run the models on this rainy image ----------------------------------------------------
st.subheader("Models on this rain")
m1, m2 = st.columns([3, 1])
with m1:
    models = ui.model_picker("lab_models")
with m2:
    variant = ui.variant_picker("lab_variant")
rain_loaded = compare.load_image(rainy, "rainy image", name=f"{preset_name}_rainy")
gt_loaded = compare.load_image(clean, "clean image", name="clean")
rkey = ui.image_key(rain_loaded, gt_loaded)
if st.button("Run the models", type="primary", key="lab_run", disabled=not models):
    upload = compare.prepare(rain_loaded, gt_loaded, models, variant)
    st.session_state["lab"] = {"key": rkey, "img": rain_loaded, "gt": gt_loaded,
                               "results": ui.run_models(upload), "input_metrics": upload.input_metrics}
lab = st.session_state.get("lab")
if lab and lab["key"] == rkey and lab["results"]:
    ui.untrained_note(lab["results"])
    ui.show_image(ui.results_grid(lab["img"], lab["gt"], lab["results"], lab["input_metrics"], cols=4))
    st.dataframe(ui.metrics_frame(lab["results"], lab["input_metrics"]), hide_index=True)
    st.markdown(ui.details_line(lab["results"]))
    st.caption(report.METRICS_NOTE)
elif lab and lab["key"] != rkey:
    st.caption("The rain changed since the last run: press **Run the models** again.")

# ---- robustness curve ----------------------------------------------------------------------
st.subheader("Robustness: PSNR against rain density")
r1, r2 = st.columns([2, 1])
with r1:
    levels = st.multiselect("Density levels (x preset)", [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0],
                            default=[0.25, 0.5, 1.0, 2.0, 3.0], key="lab_levels")
with r2:
    curve_side = st.select_slider("Curve image size (px)", [48, 64, 96, 128, 192, 256], value=128,
                                  key="lab_curve_side", help="kept small so the curve stays cheap")
st.caption("Same seed, angle, length and haze as above; only the density changes. "
           f"{len(levels)} levels x ({len(models)} models + the rainy input).")
ckey = (rkey, tuple(sorted(levels)), curve_side, tuple(models), variant)
if st.button("Compute the robustness curve", key="lab_curve", disabled=not levels or not models):
    bar = st.progress(0.0, text="Starting")
    try:
        rows = dd.robustness_curve(clean_img.rgb, levels, models, preset_name, variant, curve_side,
                                   int(seed), progress=lambda f, t: bar.progress(f, text=t), **controls)
        st.session_state["lab_curve_rows"] = {"key": ckey, "rows": rows}
    except Exception as exc:
        st.error(f"The robustness curve failed: {type(exc).__name__}: {exc}")
    finally:
        bar.empty()  # the curve (or the error) says it is over
curve = st.session_state.get("lab_curve_rows")
if curve and curve["key"] == ckey:
    df = pd.DataFrame(curve["rows"])
    space = st.radio("PSNR on", ["RGB", "Y"], horizontal=True, key="lab_curve_space")
    ycol = f"psnr_{space.lower()}"
    fig = px.line(df, x="density", y=ycol, color="label", markers=True, color_discrete_map=dd.label_colours(curve["rows"]),
                  hover_data=["variant", "seconds"],
                  labels={"density": "rain density (x preset)", ycol: f"PSNR {space} (dB)", "label": "model"})
    fig.update_layout(height=440, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="lab_curve_chart", config={"displaylogo": False})
    st.dataframe(df.pivot_table(index="label", columns="density", values=ycol).round(2))
