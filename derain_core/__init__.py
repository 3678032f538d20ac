"""derain_core: five single-image deraining networks, their engine, metrics and tools.

Public API::

    import derain_core as dc
    dc.list_models()                 # model cards
    dc.create_model("msamnet")       # random-init torch.nn.Module
    model(x); model.forward_intermediates(x); model.map_specs()
"""
from .base import DerainNet, MapSpec, Recorder
from .registry import MODEL_IDS, ModelCard, PaperResult, create_model, get_card, list_models

__all__ = ["DerainNet", "MapSpec", "Recorder", "MODEL_IDS", "ModelCard", "PaperResult",
           "create_model", "get_card", "list_models"]
__version__ = "0.1.0"
