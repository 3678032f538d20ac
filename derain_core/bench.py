"""Latency, throughput and memory of each model, fast path against the reference path.

Reference path: fp32, NCHW, the plain module code (``fast=False`` in the engine).
Fast path: what the apps use (channels_last, bf16/fp16 where the card allows, inference mode).
Both run in the same process, one after the other, so their ratio is meaningful even on a
noisy shared machine.
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .engine import MODELS, _sync, default_device, psnr_db, run_model
from .stats import model_stats


def parse_size(text: str) -> tuple[int, int]:
    """``"481x321"`` -> (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 481x321, got {text!r}") from None
    return w, h


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    elif os.path.exists("/proc/self/clear_refs"):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets the peak resident set size (VmHWM)
        except OSError:
            pass


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class BenchRow:
    model_id: str
    size: str
    device: str
    precision: str
    fast_s: float
    reference_s: float | None
    speedup: float | None
    macs_g: float
    gflops: float  # achieved, fast path: 2 * MACs / time
    peak_mb: float  # peak memory during the fast pass (CUDA: allocated; CPU: process RSS)
    psnr_vs_reference: float | None


def _time(loaded, x, repeats: int) -> tuple[float, torch.Tensor]:
    y, _ = run_model(loaded, x, tile=0)  # warm-up (also the output used for comparison)
    times = []
    for _ in range(repeats):
        _sync(loaded.device)
        t0 = time.perf_counter()
        run_model(loaded, x, tile=0)
        _sync(loaded.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), y


def bench(models: list[str], sizes: list[str], repeats: int = 1, reference: bool = True,
          device: str | None = None, progress=None) -> list[BenchRow]:
    """Measure each model at each size; see the module docstring."""
    dev = torch.device(device) if device else default_device()
    rows = []
    for size in sizes:
        w, h = parse_size(size)
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(dev)
        for model_id in models:
            macs = model_stats(model_id, h, w)["macs"]
            fast = MODELS.get(model_id, None, dev, fast=True)
            _reset_peak(dev)
            fast_s, y_fast = _time(fast, x, repeats)
            peak = _peak_mb(dev)
            ref_s = speedup = quality = None
            if reference:
                ref = MODELS.get(model_id, None, dev, fast=False)
                ref_s, y_ref = _time(ref, x, repeats)
                speedup = ref_s / fast_s
                quality = psnr_db(y_fast, y_ref)
            rows.append(BenchRow(model_id, size, str(dev), fast.precision, fast_s, ref_s, speedup,
                                 macs / 1e9, 2 * macs / fast_s / 1e9, peak, quality))
            if progress:
                progress(rows[-1])
    return rows


def machine_info() -> dict[str, str | int]:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                       repeats: int = 5) -> float:
    """The machine's measured matrix-multiply throughput (GFLOP/s) for ``dtype``.

    An ``n x n x n`` product, timed twice: ``torch.matmul`` (BLAS) and the same product as a
    1x1 convolution in channels_last (oneDNN on CPU, cuDNN on CUDA); the faster counts. Both are
    needed: on AMD CPUs MKL's fp32 GEMM can fall well short of oneDNN's.
    """
    import torch.nn.functional as F
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    x = a.T.reshape(1, n, 32, n // 32).contiguous(memory_format=torch.channels_last)
    w = b.T.reshape(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
    best = 0.0
    for product in (lambda: a @ b, lambda: F.conv2d(x, w)):
        with torch.inference_mode():
            product()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeats):
                product()
            _sync(device)
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9)
    return best


def rows_as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]


# --------------------------------------------------------------------------------------
# Training steps
# --------------------------------------------------------------------------------------
@dataclass
class TrainBenchRow:
    model_id: str
    path: str  # "current" (the training path today), "baseline" (reference kernels, as before),
    # or "compiled" (current under torch.compile: derain train --compile)
    batch: int
    patch: int
    precision: str
    sec_per_step: float
    samples_per_s: float
    gflops: float  # forward + backward, counted as 3x the forward pass's 2 * MACs
    peak_mb: float
    frac_bf16_peak: float | None = None
    frac_fp32_peak: float | None = None
    compile_s: float | None = None  # current/compiled: the first step's time beyond a timed step's
    # (compilation, page faults of a fresh heap)


def train_bench(models: list[str], batch: int = 8, patch: int = 64, steps: int = 3, device: str | None = None,
                paths: tuple[str, ...] = ("baseline", "current"), progress=None) -> list[TrainBenchRow]:
    """Seconds per training step (forward, loss, backward, Adam) of each model, on random crops.

    ``current`` is what ``derain train`` runs (bf16 autocast where native, channels_last, the
    blocks' training forms, compiled block kernels on CPU: :func:`~derain_core.base.compiled_blocks`);
    ``baseline`` is the same under :func:`reference_kernels`, the plain per-offset module code
    that trained the weights shipped before the training-speed work; ``compiled`` is the
    whole step under ``torch.compile`` (``derain train --compile``). Time spent compiling (the
    first step beyond a timed one) is reported where something compiles.

    Every row runs in a fresh process with glibc's allocator set up as ``derain train`` sets
    it (tuned, huge pages: :func:`~derain_core.engine.hugepage_env`): a heap kept from an
    earlier row would neither speed up the next nor hide its peak
    (the row's peak is its own process's peak resident memory). Rows run one after the
    other, each model's paths back to back, so their ratios are meaningful.
    """
    from .engine import hugepage_env

    ctx = multiprocessing.get_context("spawn")
    env = hugepage_env()  # huge pages for the rows' heaps, as derain train re-executes itself with
    saved = os.environ.get("GLIBC_TUNABLES")
    rows = []
    try:
        if env is not None:
            os.environ["GLIBC_TUNABLES"] = env["GLIBC_TUNABLES"]
        for model_id in models:
            for path in paths:
                with ctx.Pool(1) as pool:
                    row = pool.apply(_train_row, (model_id, path, batch, patch, steps, device, torch.get_num_threads()))
                rows.append(row)
                if progress:
                    progress(row)
    finally:
        if env is not None:
            if saved is None:
                os.environ.pop("GLIBC_TUNABLES", None)
            else:
                os.environ["GLIBC_TUNABLES"] = saved
    return rows


def _train_row(model_id: str, path: str, batch: int, patch: int, steps: int, device: str | None,
               threads: int) -> TrainBenchRow:
    """One :func:`train_bench` row, run in its own process."""
    from . import train as T
    from .base import compiled_blocks, reference_kernels
    from .engine import tune_cpu_allocator

    torch.set_num_threads(threads)
    tune_cpu_allocator()
    dev = torch.device(device) if device else default_device()
    use_bf16 = T.bf16_available(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if use_bf16 else torch.autocast(dev.type, enabled=False)
    g = torch.Generator().manual_seed(0)
    rainy = torch.rand(batch, 3, patch, patch, generator=g).to(dev).contiguous(memory_format=torch.channels_last)
    clean = torch.rand(batch, 3, patch, patch, generator=g).to(dev)
    macs = model_stats(model_id, patch, patch, training=True)["macs"]
    torch.manual_seed(0)
    net = T.build_model(model_id, {}).to(dev).to(memory_format=torch.channels_last).train()
    opt = T.make_optimizer(net.parameters(), 1e-4)
    compiled = T.compiled_loss(net, T.loss_for(model_id), dev.type, use_bf16) if path == "compiled" else None
    blocks = path == "current" and dev.type == "cpu"  # as derain train decides

    def step():
        if compiled is not None:
            loss = compiled(rainy, clean)
        else:
            loss = T.compute_loss(net, T.loss_for(model_id), rainy, clean, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with reference_kernels(path == "baseline"), compiled_blocks(blocks):
        _reset_peak(dev)
        t0 = time.perf_counter()
        step()  # warm-up (and compilation)
        first = time.perf_counter() - t0
        step()  # a second one: the heap is still growing in the first steps
        times = []
        for _ in range(steps):
            _sync(dev)
            t0 = time.perf_counter()
            step()
            _sync(dev)
            times.append(time.perf_counter() - t0)
        peak = _peak_mb(dev)
    s = statistics.median(times)
    return TrainBenchRow(model_id, path, batch, patch, "bf16" if use_bf16 else "fp32", s, batch / s,
                         3 * 2 * macs * batch / s / 1e9, peak, compile_s=first - s if path != "baseline" else None)
