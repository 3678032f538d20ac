"""Where do a training run's skipped (non-finite) steps come from?

Continues a copy of a run folder (its weights, Adam state and data stream, ``derain train
--resume``) for ``--steps`` more steps exactly as ``derain train`` would, with a hook on every
module. For each step that ``derain train`` would skip it prints whether the loss or only the
gradient was not finite, the first module (in forward order) whose output held inf/NaN, the first
(in backward order) whose output gradient did, and the modules with the largest outputs.

    .venv/bin/python scripts/find_nonfinite.py runs/msamnet_rain100l_c4 --steps 200

The run folder itself is not touched (the copy lives in a temporary folder). Slow: every module
output is checked on every step.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derain_core import train as T  # noqa: E402


def _tensors(out):
    if torch.is_tensor(out):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from _tensors(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _tensors(o)


class Watch:
    """Forward and gradient hooks on every named module of ``model``; state for one step."""

    def __init__(self, model: torch.nn.Module):
        self.handles = [m.register_forward_hook(self._forward(name)) for name, m in model.named_modules() if name]
        self.reset()

    def reset(self) -> None:
        self.first_forward: str | None = None
        self.first_backward: str | None = None
        self.largest: dict[str, float] = {}

    def _forward(self, name: str):
        def hook(_module, _inputs, out):
            for t in _tensors(out):
                if not t.is_floating_point():
                    continue
                big = float(t.detach().abs().amax()) if t.numel() else 0.0
                big = float("inf") if big != big else big  # NaN in it: listed with the infinite ones
                self.largest[name] = max(self.largest.get(name, 0.0), big)
                if self.first_forward is None and not torch.isfinite(t).all():
                    self.first_forward = f"{name} ({t.dtype})"
                if t.requires_grad:
                    t.register_hook(self._backward(name))
        return hook

    def _backward(self, name: str):
        def hook(grad):
            finite = torch.isfinite(grad)
            if self.first_backward is None and not finite.all():
                top = float(grad[finite].abs().amax()) if finite.any() else 0.0
                self.first_backward = f"{name} ({grad.dtype}, largest finite |g| {top:.3g})"
        return hook


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a derain train run folder (with last_state.json)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    state = json.loads((args.run / "last_state.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="nonfinite_"))
    for f in args.run.glob("last*"):
        shutil.copy2(f, work / f.name)
    shutil.copy2(args.run / "log.csv", work / "log.csv")
    run_cfg = {k: v for k, v in state["run_config"].items() if k in T.TrainConfig.__dataclass_fields__}
    run_cfg.update(out=str(work), resume=True, steps=state["step"] + args.steps, minutes=None, progress=False,
                   val_every=0, threads=args.threads or run_cfg.get("threads"))
    trainer = T.Trainer(T.TrainConfig(**run_cfg))
    watch = Watch(trainer.model)
    print(f"{args.run} from step {trainer.step}, {args.steps} steps, bf16 {trainer.use_bf16}", flush=True)
    skipped = 0
    for _ in range(args.steps):
        watch.reset()
        trainer._set_lr()
        loss_before = trainer.skipped_loss
        result = trainer._optimizer_step()
        trainer.step += 1
        if result is None:
            skipped += 1
            what = "loss" if trainer.skipped_loss > loss_before else "gradient only"
            top = sorted(watch.largest.items(), key=lambda kv: -kv[1])[:4]
            print(f"step {trainer.step}: non-finite {what}; first forward {watch.first_forward}; first backward "
                  f"{watch.first_backward}; largest outputs " + ", ".join(f"{k} {v:.3g}" for k, v in top), flush=True)
    print(f"{skipped} of {args.steps} steps skipped")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
