"""derain_core: five single-image deraining networks, their engine, metrics and tools.

Public API::

    import derain_core as dc
    dc.list_models()                 # model cards (dc.model_ids(): their ids)
    dc.create_model("msamnet")       # random-init torch.nn.Module
    model(x); model.forward_intermediates(x); model.map_specs()
    dc.load_model("dsmnet")          # trained weights, eval mode, fast path
    dc.derain("rainy.png", gt=None, maps=False)   # one result per model
"""
from . import settings as _settings

_settings.check()  # a malformed DERAIN_* variable: one line, before modules read them

from .base import DerainNet, MapSpec, Recorder  # noqa: E402
from .registry import ModelCard, PaperResult, create_model, get_card, list_models, model_ids  # noqa: E402
from .engine import ModelResult, derain, iter_derain, load_model  # noqa: E402

__all__ = ["DerainNet", "MapSpec", "Recorder", "ModelCard", "PaperResult", "create_model",
           "get_card", "list_models", "model_ids", "ModelResult", "derain", "iter_derain",
           "load_model"]


def __getattr__(name: str):
    if name == "MODEL_IDS":  # old name of model_ids(), kept for scripts
        return model_ids()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
__version__ = "0.1.0"
