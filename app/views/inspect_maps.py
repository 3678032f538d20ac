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

HELD = 2  # runs and map sets this session keeps besides the Compare page's (maps of big models are large)

st.title("Inspect intermediate tensors")
st.caption("Every map a network records during its forward pass (attention, features, wavelet "
           "bands, per-stage results), arranged by the model's own groups (stage / scale / band). "
           "A model the Compare page already ran on this photo is not run again.")

cmp = st.session_state.get("cmp")  # the Compare page's last run
with st.container(border=True):
    img, _ = ui.input_picker("insp", allow_gt=False)
    c1, c2 = st.columns([3, 1])
    with c1:  # first offered: a model the Compare page ran, whose result is at hand
        model_id = ui.model_picker("insp_model", multi=False,
                                   default=[r.model_id for r in cmp["results"]][:1] if cmp else None)
    with c2:
        variant = ui.variant_picker("insp_variant")

if img is None:
    st.info("Choose an example or upload an image to inspect a model on it.")
    st.stop()


def _hold(store: dict, key, value):
    store.pop(key, None)
    store[key] = value
    while len(store) > HELD:
        store.pop(next(iter(store)))
    return value


photo_key = ui.image_key(img)
result = None
if cmp and cmp.get("photo_key") == photo_key and cmp["upload"].variant == variant:
    # The Compare page's result of this photo, model and weights: its output and the very image it saw.
    result = next((r for r in cmp["results"] if r.model_id == model_id), None)
    seen = cmp["upload"].image
if result is not None:
    origin = "result of the Compare page's run (not run again)"
else:
    runs: dict = st.session_state.setdefault("insp_runs", {})
    rkey = (photo_key, model_id, variant)
    if rkey not in runs:
        name = ui.model_names().get(model_id, model_id)
        with st.spinner(f"Running {name} on this photo (the Compare page has no result of it)"):
            up = compare.prepare(img, None, [model_id], variant, max_side=compare.WORKING_MAX_SIDE)
            step = next(compare.run(up, metrics=False))
        if step.error:
            st.error(step.error)
            st.stop()
        _hold(runs, rkey, (step.result, up.image))
    result, seen = runs[rkey]
    origin = "run on this page"

# Maps are recorded once per photo, model and weights: held in this session and in the core's
# bounded cache shared by all sessions.
held: dict = st.session_state.setdefault("insp_maps", {})
mkey = (photo_key, seen.width, seen.height, model_id, result.variant)
maps = held.get(mkey)
if maps is None:
    try:
        with st.spinner(f"Recording the maps of {result.label}"):
            maps = compare.MAPS.get_or_compute(mkey, lambda: compare.maps_of(seen, result))
    except (ValueError, RuntimeError, MemoryError) as exc:
        st.error(f"The maps of {result.label} failed: {exc}")
        st.stop()
    _hold(held, mkey, maps)
ui.untrained_note([result])

specs = maps.specs
if not specs:
    st.warning("This model recorded no maps.")
    st.stop()
groups = viz.group_specs(specs, default="(top level)")
st.caption(f"{result.label}: {len(specs)} maps in {len(groups)} groups · {maps.note} · {origin}, "
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

o1, o2, o3, o4 = st.columns([1, 1, 1, 1])
with o1:
    cmap = st.selectbox("Colour map", ["auto", *viz.CMAPS], key="insp_cmap",
                        help="auto: the kind's default (signed bands use a diverging map)")
with o4:
    per_row = st.radio("Panels per row", [2, 1], horizontal=True, key="insp_per_row",
                       help="2: about 1150 px wide; 1: each panel alone, about 580 px (narrow windows)")
spatial = viz.is_spatial(values, spec)
overlay_ok = viz.can_overlay(values, spec)  # images and residuals are shown as they are
with o2:
    use_overlay = st.toggle("Overlay on the image", value=False, key="insp_overlay", disabled=not overlay_ok,
                            help=None if overlay_ok else "This map is a picture itself: nothing to lay over the photo.")
with o3:
    alpha = st.slider("Overlay opacity", 0.1, 1.0, 0.6, 0.05, key="insp_alpha", disabled=not use_overlay)

family = viz.siblings(spec, specs)  # the same map at the other scales / stages (core rule)
across = st.toggle("Compare across scales / stages", value=False, key="insp_across", disabled=family is None,
                   help="This map beside its siblings at the other scales or stages, on one colour scale"
                   if family else "This map has no siblings at other scales or stages.")
stretch = st.toggle("Stretch attention colours", value=False, key="insp_stretch",
                    help="Attention maps between their 1st and 99th percentile instead of the fixed 0-1 scale, "
                    "so that small differences (a gate at 0.50 on the streaks and 0.53 elsewhere) show.")
if across and family:
    axis, fam = family
    picture = viz.render_siblings([maps.maps[s.key] for s in fam], fam, axis,
                                  cmap=None if cmap == "auto" else cmap, cols=per_row, stretch=stretch)
    name = f"{result.label} {spec.key} across {axis}s"
else:
    picture = viz.render_map(values, spec, image=maps.base if use_overlay and overlay_ok else None,
                             overlay_alpha=alpha if use_overlay and overlay_ok else None,
                             cmap=None if cmap == "auto" else cmap, cols=per_row, stretch=stretch)
    name = f"{result.label} {group} {spec.key}" + (" overlay" if use_overlay and overlay_ok else "")
name += " stretched" if stretch else ""
ui.show_image(picture)  # at its own size (480-px panels), never wider than the screen
ui.remember_map(photo_key, name, picture)  # the Compare page's zip of this photo holds the maps looked at

# ---- interactive view: zoom and hover values ------------------------------------------
st.subheader("Interactive view")
panels = viz.panels_of(values, spec, stretch=stretch)
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
