"""The networks, one module each; importing this package registers every one of them.

Like BasicSR's arch folder, every module in this package is imported so that its
``@register(CARD)`` decorator runs; adding a network means adding a file.
"""
import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
