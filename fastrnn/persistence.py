"""Layers travel: pickling, and a plain ``.npz`` readable without fastrnn.

The ``.npz`` holds one entry per parameter (torch's names and shapes) and a
``__config__`` entry: a JSON string with the class name and constructor arguments.
"""

import json
import os
import zipfile

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
    """The layer (or model) saved at ``path`` by ``save``.  A file that is not one
    ``save`` wrote (truncated, edited, another format) raises ``ValueError``."""
    try:
        data = np.load(os.fspath(path), allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not a fastrnn file (an .npy array, not an .npz)")
        with data:
            if CONFIG_KEY not in data.files:
                raise ValueError(f"{path}: not a fastrnn file (no {CONFIG_KEY!r} entry)")
            header = json.loads(str(data[CONFIG_KEY]))
            arrays = {k: data[k] for k in data.files if k != CONFIG_KEY}
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"{path}: not a readable fastrnn file ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        found = header.get("format") if isinstance(header, dict) else header
        raise ValueError(f"{path}: unsupported fastrnn file format {found!r}")
    cls = _CLASSES.get(header.get("cls"))
    if cls is None:
        raise ValueError(f"{path}: unknown class {header.get('cls')!r}")
    config = header.get("config")
    if hasattr(cls, "_from_npz_entries"):
        try:
            return cls._from_npz_entries(config, arrays)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: the {cls.__name__} configuration is incomplete "
                             f"or altered ({type(error).__name__}: {error})") from None
    obj = build(cls, config, path)
    obj.load_state_dict(arrays)
    return obj


def build(cls, config, where):
    """``cls(**config)``, checked: the configuration must be exactly what such an object
    writes (``_config()``), so that a key lost or edited in a file raises rather than
    falling back on a constructor default (batch_first, nonlinearity...)."""
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the {cls.__name__} configuration must be a JSON "
                         f"object, got {type(config).__name__}")
    try:
        obj = cls(**config)
    except TypeError as error:
        raise ValueError(f"{where}: the configuration does not fit {cls.__name__}: "
                         f"{error}") from None
    written = obj._config()
    if written != config:
        absent = object()
        changed = sorted(k for k in set(written) | set(config)
                         if written.get(k, absent) != config.get(k, absent))
        raise ValueError(f"{where}: the {cls.__name__} configuration is incomplete or "
                         f"altered (key(s) {', '.join(changed)})")
    return obj
