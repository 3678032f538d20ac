"""Benchmark page: the committed evaluation results as interactive charts, with the papers' own
numbers as reference marks and every model's parameter count."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from derain_core import dashboard_data as dd

st.title("Benchmark")


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


root = dd.results_dir()
summary, per_image, bench = _load(str(root), _stamp(root))
models, papers = _static()
paper_df = pd.DataFrame(papers)

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
summ_df = pd.DataFrame(dd.benchmark_rows(summary, per_image, bench)) if summary else pd.DataFrame()
models_df = summ_df[summ_df["model"] != dd.BASELINE] if not summ_df.empty else summ_df
baseline = summ_df[summ_df["model"] == dd.BASELINE] if not summ_df.empty else summ_df


def _baseline_line(fig: go.Figure) -> None:
    for _, b in baseline.iterrows():
        if pd.notna(b.get(col)):
            fig.add_hline(y=b[col], line_dash="dot", line_color="gray",
                          annotation_text=f"rainy input ({b['source']})", annotation_position="bottom right")


# ---- metric against parameters, with the papers' numbers --------------------------------
st.subheader(f"{axis} against parameters")
fig = go.Figure()
if not models_df.empty:
    for (label, variant), g in models_df.groupby(["label", "variant"], sort=False):
        fig.add_trace(go.Scatter(
            x=g["params"] / 1e6, y=g[col], mode="markers", marker=dict(size=13),
            name=f"{label} · {variant}",
            customdata=g[["source", "images"]].values,
            hovertemplate="%{y:.4g} · %{x:.2f} M params<br>results: %{customdata[0]}, "
                          "%{customdata[1]} images<extra>" + f"{label} · {variant}</extra>"))
    _baseline_line(fig)
if not paper_df.empty:
    pcol = "psnr" if metric == "PSNR" else "ssim"
    fig.add_trace(go.Scatter(
        x=paper_df["params_m"], y=paper_df[pcol], mode="markers", name="paper (reported)",
        marker=dict(symbol="x-thin", size=11, line=dict(width=2), color="rgba(90,90,90,0.8)"),
        customdata=paper_df[["name", "dataset", "colour_space"]].values,
        hovertemplate="%{customdata[0]}: %{y} on %{customdata[1]}<br>paper's number, "
                      "colour space: %{customdata[2]}<extra>paper</extra>"))
fig.update_layout(xaxis_title="parameters (millions; our re-implementation, default config)",
                  yaxis_title=axis, height=460, margin=dict(l=10, r=10, t=30, b=10))
st.plotly_chart(fig, key="bm_params", config={"displaylogo": False})
st.caption("Crosses: the numbers each paper reports for its own model (various test sets, colour "
           "space as stated by the paper), placed at our parameter count. They are references, not "
           "our measurements.")

if not models_df.empty:
    # ---- metric against runtime ---------------------------------------------------------
    st.subheader(f"{axis} against runtime")
    timed = models_df.dropna(subset=["seconds"])
    if timed.empty:
        st.info("No runtimes in the results (no `seconds` column and no bench_cpu.json).")
    else:
        fig = px.scatter(timed, x="seconds", y=col, color="label", symbol="variant", log_x=True,
                         hover_data=["model", "variant", "images", "seconds_source"],
                         labels={"seconds": "seconds per image (log)", col: axis})
        fig.update_traces(marker=dict(size=13))
        _baseline_line(fig)
        fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="bm_runtime", config={"displaylogo": False})
        st.caption("Runtime: mean forward time per image during evaluation (`eval`), else the "
                   "fast-path time of bench_cpu.json at its largest size (`bench`).")

    st.dataframe(models_df[["label", "variant", "source", "images", "psnr_rgb", "ssim_rgb", "psnr_y",
                            "ssim_y", "seconds", "params"]].round(4), hide_index=True)

# ---- per-image distribution ---------------------------------------------------------------
if per_image:
    st.subheader(f"Per-image {axis}")
    pi_df = pd.DataFrame(per_image)
    if col in pi_df:
        pi_df["model · variant"] = pi_df["label"] + " · " + pi_df["variant"].astype(str)
        fig = px.box(pi_df, x="model · variant", y=col, points="all", color="label",
                     hover_data=["image", "seconds"] if "seconds" in pi_df else ["image"],
                     labels={col: axis})
        fig.update_layout(height=440, showlegend=False, margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="bm_per_image", config={"displaylogo": False})

# ---- CPU benchmark --------------------------------------------------------------------------
if bench:
    st.subheader("Speed (bench_cpu.json)")
    b_df = pd.DataFrame(bench["rows"])
    if {"model_id", "size", "fast_s"} <= set(b_df.columns):
        known = {r["model"] for r in models}
        b_df["label"] = b_df["model_id"].map(lambda m: dd.model_label(m, None) if m in known else m)
        fig = px.bar(b_df, x="label", y="fast_s", color="size", barmode="group",
                     hover_data=[c for c in ("reference_s", "speedup", "macs_g", "gflops", "peak_mb")
                                 if c in b_df],
                     labels={"fast_s": "seconds per image (fast path)", "label": "model"})
        fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="bm_speed", config={"displaylogo": False})
    st.caption(f"Machine: {bench.get('machine', 'not recorded')}")
    st.dataframe(b_df, hide_index=True)

# ---- models and papers ----------------------------------------------------------------------
st.subheader("Models")
st.dataframe(pd.DataFrame(models).rename(columns={"params_m": "params (M)"}), hide_index=True)
st.subheader("The papers' reported numbers")
if paper_df.empty:
    st.info("No paper results in the model cards.")
else:
    st.dataframe(paper_df.drop(columns=["model"]), hide_index=True)
