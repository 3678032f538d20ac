"""The five networks; importing this package registers them all."""
from . import dsmnet, jdnet, mfan, msamnet, rranet  # noqa: F401
