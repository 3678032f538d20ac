"""Inspect page: browse every intermediate tensor a model records (MapSpec), grouped by stage,
scale or band, with colour maps, overlays, interactive zoom/hover, channel grids and histograms."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

import dashboard_ui as ui
from derain_core import compare
from derain_core import dashboard_data as dd
from derain_core import viz

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
        up = compare.prepare(img, None, [model_id], variant, max_side=compare.WORKING_MAX_SIDE)
        step = next(compare.run(up, metrics=False))
        if step.error:
            st.error(step.error)
            st.stop()
        try:
            maps = compare.maps_of(up.image, step.result)  # the maps say at what size the photo ran
        except (ValueError, RuntimeError, MemoryError) as exc:
            st.error(f"The maps of {step.name} failed: {exc}")
            st.stop()
    while len(cache) >= CACHE_ENTRIES:
        cache.pop(next(iter(cache)))
    cache[ckey] = (step.result, maps)
result, maps = cache[ckey]
ui.untrained_note([result])

specs = maps.specs
if not specs:
    st.warning("This model recorded no maps.")
    st.stop()
groups = viz.group_specs(specs, default="(top level)")
st.caption(f"{result.label}: {len(specs)} maps in {len(groups)} groups · {maps.note} · "
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
values = maps.maps[spec.key]  # float (C, h, w)
c, mh, mw = values.shape
st.markdown(f"**{spec.title}** — {spec.meaning}  \n`{spec.key}` · kind *{spec.kind}* · "
            f"{c} x {mh} x {mw}" + (f" · 1/{spec.scale} of the input" if spec.scale > 1 else ""))

o1, o2, o3 = st.columns([1, 1, 1])
with o1:
    cmap = st.selectbox("Colour map", ["auto", *viz.CMAPS], key="insp_cmap",
                        help="auto: the kind's default (signed bands use a diverging map)")
spatial = viz.is_spatial(values, spec)
overlay_ok = viz.can_overlay(values, spec)  # images and residuals are shown as they are
with o2:
    use_overlay = st.toggle("Overlay on the image", value=False, key="insp_overlay", disabled=not overlay_ok,
                            help=None if overlay_ok else "This map is a picture itself: nothing to lay over the photo.")
with o3:
    alpha = st.slider("Overlay opacity", 0.1, 1.0, 0.6, 0.05, key="insp_alpha", disabled=not use_overlay)

picture = viz.render_map(values, spec, image=maps.base if use_overlay and overlay_ok else None,
                         overlay_alpha=alpha if use_overlay and overlay_ok else None,
                         cmap=None if cmap == "auto" else cmap)
ui.show_image(picture)
ui.remember_map(ckey[0], f"{result.label} {group} {spec.key}" + (" overlay" if use_overlay and overlay_ok else ""),
                picture)  # the Compare page's zip of this photo holds the maps looked at

# ---- interactive view: zoom and hover values ------------------------------------------
st.subheader("Interactive view")
panels = viz.map_panels(values, spec)
pi = 0
if len(panels) > 1:
    pi = st.selectbox("Panel", range(len(panels)), format_func=lambda i: panels[i].label, key=f"insp_panel_{spec.key}")
panel = panels[pi]
label = panel.label
if panel.rgb or panel.categorical:  # the exact colours of the picture above (index maps: no colour scale)
    fig = px.imshow(viz.panel_colours(panel), zmin=0, zmax=255)
else:
    # Same colour map and value range as the picture above (cmap "auto": the kind's default).
    fig = px.imshow(panel.data, color_continuous_scale=dd.plotly_colorscale(panel.cmap if cmap == "auto" else cmap),
                    zmin=panel.vrange[0], zmax=panel.vrange[1], aspect="equal")
fig.update_layout(title=label, margin=dict(l=10, r=10, t=40, b=40), height=480)
st.plotly_chart(fig, key="insp_imshow", theme=None, config={"displaylogo": False})
if panel.note:
    st.caption(panel.note)

# ---- channels: grid, statistics, histogram ---------------------------------------------
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
    ui.show_image(grid, caption="each channel coloured over its own 1st-99th percentile (inside the border)")
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
    ui.show_image(ui.display(result.output), caption=result.caption)
