"""Where one training step of a model spends its time: PyTorch's profiler over one step.

    .venv/bin/python scripts/profile_train_step.py jdnet [--batch 8 --patch 64 --threads 2 --rows 25]

The step is what `derain train` runs on CPU (bf16 autocast where native, channels_last, the
model's loss, Adam), after one warm-up step, on random crops. Prints the step's wall time, the
operators by self time, then grouped by input shape (which layer a cost belongs to).
`--reference` profiles the plain reference code instead (`derain_core.base.reference_kernels`).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derain_core import train as T  # noqa: E402
from derain_core.base import compiled_blocks, reference_kernels  # noqa: E402
from derain_core.engine import tune_cpu_allocator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--warmup", type=int, default=2, help="unprofiled steps first (the first ones fault pages in)")
    p.add_argument("--reference", action="store_true", help="profile the plain reference code")
    args = p.parse_args(argv)

    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    tune_cpu_allocator()  # as `derain train` does on CPU
    torch.manual_seed(0)
    net = T.build_model(args.model, {}).train().to(memory_format=torch.channels_last)
    opt = T.make_optimizer(net.parameters(), 1e-4)
    x = torch.rand(args.batch, 3, args.patch, args.patch).contiguous(memory_format=torch.channels_last)
    y = torch.rand(args.batch, 3, args.patch, args.patch)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=T.bf16_available(torch.device("cpu")))

    def step() -> None:
        loss = T.compute_loss(net, T.loss_for(args.model), x, y, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # as derain train runs it: compiled block kernels on CPU (their first call compiles)
    with reference_kernels(args.reference), compiled_blocks(not args.reference):
        for _ in range(args.warmup):
            step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            t0 = time.perf_counter()
            step()
            seconds = time.perf_counter() - t0
    print(f"{args.model} ({'reference' if args.reference else 'training'} path): one step of batch "
          f"{args.batch} x {args.patch}x{args.patch} on {args.threads} threads: {seconds:.2f} s (profiled)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=30, max_shapes_column_width=90))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
