"""Layers travel: pickling, and a plain ``.npz`` readable without fastrnn.

The ``.npz`` holds one entry per parameter (torch's names and shapes) and a
``__config__`` entry: a JSON string with the class name and constructor arguments.
"""

import json
import os

import numpy as np

__all__ = ["save", "load", "register"]

CONFIG_KEY = "__config__"
FORMAT_VERSION = 1
_CLASSES = {}


def register(cls):
    """Make ``cls`` loadable by name (a class decorator).  It must provide
    ``_config()`` (constructor keyword arguments, JSON-able), ``state_dict()`` and
    ``load_state_dict()``, or ``_to_npz_entries`` / ``_from_npz_entries`` for
    objects made of several parts."""
    _CLASSES[cls.__name__] = cls
    return cls


def save(obj, path):
    """Write ``obj`` (a layer, or a model that registered itself) to ``path`` (.npz)."""
    if hasattr(obj, "_to_npz_entries"):
        config, arrays = obj._to_npz_entries()
    else:
        config, arrays = obj._config(), obj.state_dict()
    header = dict(format=FORMAT_VERSION, cls=type(obj).__name__, config=config)
    if CONFIG_KEY in arrays:
        raise ValueError(f"a parameter may not be named {CONFIG_KEY!r}")
    # An open file keeps the name as given (np.savez would append ".npz").
    with open(os.fspath(path), "wb") as f:
        np.savez(f, **{CONFIG_KEY: np.array(json.dumps(header))}, **arrays)


def load(path):
    """The layer (or model) saved at ``path`` by ``save``."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if CONFIG_KEY not in data.files:
            raise ValueError(f"{path}: not a fastrnn file (no {CONFIG_KEY!r} entry)")
        header = json.loads(str(data[CONFIG_KEY]))
        arrays = {k: data[k] for k in data.files if k != CONFIG_KEY}
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported fastrnn file format {header.get('format')!r}")
    cls = _CLASSES.get(header["cls"])
    if cls is None:
        raise ValueError(f"{path}: unknown class {header['cls']!r}")
    if hasattr(cls, "_from_npz_entries"):
        return cls._from_npz_entries(header["config"], arrays)
    obj = cls(**header["config"])
    obj.load_state_dict(arrays)
    return obj
