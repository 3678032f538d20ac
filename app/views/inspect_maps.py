"""Inspect page: browse every intermediate tensor a model records (MapSpec), grouped by stage,
scale or band, with colour maps, overlays, interactive zoom/hover, channel grids and histograms."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

import dashboard_ui as ui
from derain_core import dashboard_data as dd
from derain_core import viz
from derain_core.engine import derain_one

CACHE_ENTRIES = 2  # maps of big models are large: keep only the last few runs

st.title("Inspect intermediate tensors")
st.caption("Every map a network records during its forward pass (attention, features, wavelet "
           "bands, per-stage results), arranged by the model's own groups (stage / scale / band).")

with st.container(border=True):
    img, _ = ui.input_picker("insp", allow_gt=False)
    c1, c2 = st.columns([3, 1])
    with c1:
        model_id = ui.model_picker("insp_model", multi=False)
    with c2:
        variant = ui.variant_picker("insp_variant")

if img is None:
    st.info("Choose an example or upload an image to inspect a model on it.")
    st.stop()

cache: dict = st.session_state.setdefault("insp_cache", {})
ckey = (ui.image_key(img), model_id, variant)
if ckey not in cache:
    with st.spinner(f"running {model_id} and recording its maps"):
        try:
            ui.cached_model(model_id, ui.dd_variant(model_id, variant))
            result = derain_one(img, model_id, ui.dd_variant(model_id, variant), maps=True, metrics=False)
        except Exception as exc:
            st.error(f"{model_id} failed: {type(exc).__name__}: {exc}")
            st.stop()
    while len(cache) >= CACHE_ENTRIES:
        cache.pop(next(iter(cache)))
    cache[ckey] = result
result = cache[ckey]
ui.untrained_note([result])

specs = [s for s in result.map_specs if s.key in (result.maps or {})]
if not specs:
    st.warning("This model recorded no maps.")
    st.stop()
groups = viz.group_specs(specs, default="(top level)")
st.caption(f"{result.label}: {len(specs)} maps in {len(groups)} groups · {result.maps_note} · "
           f"forward pass {result.seconds:.2f} s on {result.device} ({result.precision})")

g1, g2 = st.columns([1, 1])
with g1:
    group = st.selectbox("Group (stage / scale / band)", list(groups),
                         format_func=lambda g: f"{g}  ({len(groups[g])})", key=f"insp_group_{model_id}")
with g2:
    in_group = groups[group]
    spec = in_group[st.selectbox("Map", range(len(in_group)),
                                 format_func=lambda i: f"{in_group[i].title}  [{in_group[i].key}]",
                                 key=f"insp_map_{model_id}_{group}")]
tensor = result.maps[spec.key]
c, mh, mw = tensor.shape[-3:]
st.markdown(f"**{spec.title}** — {spec.meaning}  \n`{spec.key}` · kind *{spec.kind}* · "
            f"{c} x {mh} x {mw}" + (f" · 1/{spec.scale} of the input" if spec.scale > 1 else ""))

o1, o2, o3 = st.columns([1, 1, 1])
with o1:
    cmap = st.selectbox("Colour map", ["auto", *viz.CMAPS], key="insp_cmap",
                        help="auto: the kind's default (signed bands use a diverging map)")
spatial = spec.scale > 0 and spec.kind != "vector" and mh > 1 and mw > 1
with o2:
    use_overlay = st.toggle("Overlay on the image", value=False, key="insp_overlay", disabled=not spatial)
with o3:
    alpha = st.slider("Overlay opacity", 0.1, 1.0, 0.6, 0.05, key="insp_alpha", disabled=not use_overlay)

base = img.rgb
if result.maps_scale < 1.0:  # maps come from a downscaled preview pass: overlay on the same size
    base = dd.downscale(img.rgb, round(max(img.height, img.width) * result.maps_scale))
picture = viz.render_map(tensor, spec, image=base if use_overlay and spatial else None,
                         overlay_alpha=alpha if use_overlay and spatial else None,
                         cmap=None if cmap == "auto" else cmap, size=256)
ui.show_image(picture)

# ---- interactive view: zoom and hover values ------------------------------------------
st.subheader("Interactive view")
panels = dd.map_panels(tensor, spec)
pi = 0
if len(panels) > 1:
    pi = st.selectbox("Panel", range(len(panels)), format_func=lambda i: panels[i].label, key=f"insp_panel_{spec.key}")
panel = panels[pi]
label = panel.label
if panel.rgb:
    fig = px.imshow(np.clip(panel.data, 0, 1) * 255, zmin=0, zmax=255)
else:
    # Same colour map and value range as the picture above (cmap "auto": the kind's default).
    fig = px.imshow(panel.data, color_continuous_scale=dd.plotly_colorscale(panel.cmap if cmap == "auto" else cmap),
                    zmin=panel.zmin, zmax=panel.zmax, aspect="equal")
fig.update_layout(title=label, margin=dict(l=10, r=10, t=40, b=40), height=480)
st.plotly_chart(fig, key="insp_imshow", theme=None, config={"displaylogo": False})

# ---- channels: grid, statistics, histogram ---------------------------------------------
values = tensor[0].numpy() if tensor.dim() == 4 else tensor.numpy()
if c > 1 and spatial:
    st.subheader(f"Channels ({c})")
    k1, k2 = st.columns([1, 1])
    with k1:
        max_ch = st.slider("Channels shown", 1, min(c, 128), min(c, 32), key=f"insp_max_ch_{spec.key}")
    with k2:
        order = st.radio("Order", ["index", "std"], horizontal=True, key="insp_order",
                         help="std: the most varied channels first")
    grid, stats = viz.channel_grid(values, max_channels=max_ch, cols=8,
                                   cmap=cmap if cmap != "auto" else "viridis", order=order)
    ui.show_image(grid, caption="each channel with its own min-max range")
    st.dataframe(pd.DataFrame(stats).round(4), hide_index=True, height=240)

st.subheader("Histogram of values")
flat = values.reshape(-1)
flat = flat[np.isfinite(flat)]
if flat.size > 200_000:  # a fixed subsample keeps the chart light
    flat = np.random.default_rng(0).choice(flat, 200_000, replace=False)
hist = px.histogram(pd.DataFrame({"value": flat}), x="value", nbins=80)
hist.update_layout(margin=dict(l=10, r=10, t=10, b=10), height=260, bargap=0.02)
st.plotly_chart(hist, key="insp_hist", config={"displaylogo": False})
st.caption(f"{values.size:,} values · min {float(np.nanmin(values)):.4g} · max {float(np.nanmax(values)):.4g} · "
           f"mean {float(np.nanmean(values)):.4g} · std {float(np.nanstd(values)):.4g}")

with st.expander("Model output"):
    ui.show_image(ui.display(result.output), caption=result.label)
