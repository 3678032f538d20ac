"""Benchmark page: the committed evaluation results as interactive charts, with the papers' own
numbers (grouped by test set and colour space) as references and every model's parameter count."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from derain_core import dashboard_data as dd

st.title("Benchmark")
st.caption("How well and how fast each model derains: our own measurements on the Rain100L test set "
           "(the shipped weights, filled dots), beside the numbers each paper reports for its own model "
           "(open markers, one shape per test set), with the speed of each model on this project's "
           "benchmark machine.")


@st.cache_data(show_spinner=False)
def _load(root: str, stamp: float) -> tuple[list, list, dict | None]:
    """Results from ``root`` (``stamp``: newest file time, so new results are picked up)."""
    return dd.load_eval_summary(root), dd.load_eval_per_image(root), dd.load_bench(root)


@st.cache_data(show_spinner=False)
def _static() -> tuple[list, list]:
    return dd.model_rows(), dd.paper_rows()


def _stamp(root) -> float:
    files = [p for p in root.glob("**/*") if p.is_file()] if root.is_dir() else []
    return max((p.stat().st_mtime for p in files), default=0.0)


def _table(df: pd.DataFrame, columns: list[str]) -> None:
    cols = [c for c in columns if c in df.columns]
    st.dataframe(df[cols].rename(columns=dd.readable_columns(cols)), hide_index=True)


root = dd.results_dir()
summary, per_image, bench = _load(str(root), _stamp(root))
models, papers = _static()
all_rows = dd.benchmark_rows(summary, None, bench) if summary else []
rows, rechecks = dd.split_rechecks(all_rows)
colours = dd.label_colours(all_rows + [{"model": r["model"], "label": r["name"]} for r in models])

c1, c2 = st.columns([1, 1])
with c1:
    metric = st.radio("Metric", ["PSNR", "SSIM"], horizontal=True, key="bm_metric")
with c2:
    space = st.radio("Computed on", ["Y", "RGB"], horizontal=True, key="bm_space",
                     help="Y: BT.601 luma as MATLAB rgb2ycbcr (what most deraining papers report)")
col = f"{metric.lower()}_{space.lower()}"
axis = f"{metric} {space}" + (" (dB)" if metric == "PSNR" else "")

if not summary:
    st.info(f"No committed evaluation results found in `{root}` (expected "
            "`<variant>/eval_summary.json` and `<variant>/eval_per_image.csv`, written by "
            "`derain eval ... --out results/<variant>`). The papers' own numbers and the parameter "
            "counts are shown below.")
summ_df = pd.DataFrame(rows)
models_df = summ_df[summ_df["model"] != dd.BASELINE] if not summ_df.empty else summ_df
baseline = summ_df[summ_df["model"] == dd.BASELINE] if not summ_df.empty else summ_df


def _baseline_line(fig: go.Figure) -> None:
    for _, b in baseline.iterrows():
        if pd.notna(b.get(col)):
            fig.add_hline(y=b[col], line_dash="dot", line_color="gray",
                          annotation_text=f"rainy input, no model ({b['source']})", annotation_position="bottom right")


# ---- metric against parameters, with the papers' numbers --------------------------------
st.subheader(f"{axis} against parameters")
groups = dd.paper_groups(papers)
datasets = list(dict.fromkeys(g[1] for g in groups))
ours = {str(s).lower() for s in summ_df.get("source", [])}
default = [d for d in datasets if d.lower() in ours] or datasets
shown_sets = st.multiselect("Papers' numbers on", datasets, default=default, key="bm_paper_sets",
                            help="Each paper reports other test sets too; ours are measured on Rain100L.")
fig = go.Figure()
if not models_df.empty:
    for (label, variant, model), g in models_df.groupby(["label", "variant", "model"], sort=False):
        fig.add_trace(go.Scatter(
            x=g["params"] / 1e6, y=g[col], mode="markers", name=f"ours · {label} · {variant}",
            marker=dict(size=15, color=dd.model_colour(model), line=dict(width=1.5, color="#222")),
            customdata=g[["source", "images"]].values,
            hovertemplate="%{y:.4g} · %{x:.2f} M params<br>our measurement: %{customdata[0]}, "
                          "%{customdata[1]} images<extra>" + f"{label} · {variant}</extra>"))
    _baseline_line(fig)
pcol = "psnr" if metric == "PSNR" else "ssim"
for name, dataset, symbol, g_rows in groups:
    if dataset not in shown_sets:
        continue
    g = pd.DataFrame(g_rows)
    # The legend shows the test set's shape in grey; the points have their model's colour.
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=name,
                             marker=dict(symbol=symbol, size=12, line=dict(width=2), color="#555")))
    fig.add_trace(go.Scatter(
        x=g["params_m"], y=g[pcol], mode="markers", name=name, legendgroup=name, showlegend=False,
        marker=dict(symbol=symbol, size=12, line=dict(width=2), color=[dd.model_colour(m) for m in g["model"]]),
        customdata=g[["name", "dataset", "colour_space"]].values,
        hovertemplate="%{customdata[0]}: %{y} on %{customdata[1]}<br>the paper's own number, "
                      "colour space: %{customdata[2]}<extra>paper</extra>"))
fig.update_layout(xaxis_title="parameters (millions; our re-implementation, default config)",
                  yaxis_title=axis, height=480, margin=dict(l=10, r=10, t=30, b=10),
                  legend=dict(title="filled: ours · open: papers (shape = test set)"))
st.plotly_chart(fig, key="bm_params", config={"displaylogo": False})
st.caption("Filled dots: our measurements of the shipped weights (colour = model). Open markers: the "
           "number each paper reports for its own model, one shape per test set, placed at our parameter "
           "count, colour space as the paper states it (most papers do not say). They are references, "
           "not our measurements, and only numbers on the same test set compare.")
if rechecks:
    st.caption(dd.recheck_note(all_rows, rechecks, col))

if not models_df.empty:
    # ---- metric against runtime ---------------------------------------------------------
    st.subheader(f"{axis} against runtime")
    timed = models_df.dropna(subset=["seconds"])
    if timed.empty:
        st.info("No runtimes: results/bench_cpu.json is missing (run `derain bench`).")
    else:
        fig = px.scatter(timed, x="seconds", y=col, color="label", symbol="variant", log_x=True,
                         color_discrete_map=colours, hover_data=["variant", "images", "seconds_source"],
                         labels={"seconds": "seconds per image (log)", col: axis, "label": "model",
                                 "variant": "weights", "seconds_source": "runtime from"})
        fig.update_traces(marker=dict(size=14, line=dict(width=1.5, color="#222")))
        _baseline_line(fig)
        fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="bm_runtime", config={"displaylogo": False})
        sizes = sorted(set(timed["seconds_source"].dropna().str.rsplit(", ", n=1).str[-1]))
        st.caption(f"Runtime: one source for every model, the fast-path seconds per {' / '.join(sizes)} image "
                   "in results/bench_cpu.json (the Speed chart below), on the machine it names.")

    _table(models_df.assign(params_m=models_df["params"] / 1e6).round(4),
           ["label", "variant", "source", "images", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "seconds", "params_m"])

# ---- per-image distribution ---------------------------------------------------------------
per_main, _ = dd.split_rechecks(per_image)
if per_main:
    st.subheader(f"Per-image {axis}")
    pi_df = pd.DataFrame(per_main)
    if col in pi_df:
        pi_df["model · weights"] = pi_df["label"] + " · " + pi_df["variant"].astype(str)
        fig = px.box(pi_df, x="model · weights", y=col, points="all", color="label", color_discrete_map=colours,
                     hover_data=["image"], labels={col: axis, "label": "model"})
        fig.update_layout(height=440, showlegend=False, margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="bm_per_image", config={"displaylogo": False})
        st.caption("One dot per test image; the box spans the middle half, the line is the median.")

# ---- CPU benchmark --------------------------------------------------------------------------
if bench:
    st.subheader("Speed (results/bench_cpu.json)")
    b_df = pd.DataFrame(bench["rows"])
    if {"model_id", "size", "fast_s"} <= set(b_df.columns):
        known = {r["model"] for r in models}
        b_df["label"] = b_df["model_id"].map(lambda m: dd.model_label(m, None) if m in known else m)
        bar_colours = {lbl: dd.model_colour(m) for m, lbl in zip(b_df["model_id"], b_df["label"])}
        fig = px.bar(b_df, x="size", y="fast_s", color="label", barmode="group", color_discrete_map=bar_colours,
                     hover_data=[c for c in ("reference_s", "speedup", "macs_g", "gflops", "peak_mb") if c in b_df],
                     labels={"fast_s": "seconds per image (fast path)", "label": "model", "size": "image size"})
        fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="bm_speed", config={"displaylogo": False})
    st.caption(f"Machine: {dd.machine_text(bench)}. Fast path: the engine's default settings "
               "(precision and threads as listed); reference path: plain fp32.")
    _table(b_df.round(3), ["label", "size", "device", "precision", "fast_s", "reference_s", "speedup", "macs_g", "gflops",
                  "peak_mb"])

# ---- models and papers ----------------------------------------------------------------------
st.subheader("Models")
_table(pd.DataFrame(models), ["name", "paper", "params_m", "weights", "predicts"])
st.subheader("The papers' reported numbers")
if not papers:
    st.info("No paper results in the model cards.")
else:
    _table(pd.DataFrame(papers), ["name", "dataset", "colour_space", "psnr", "ssim", "note", "params_m"])
