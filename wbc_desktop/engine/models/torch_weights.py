"""Read a legacy (pre-zip) PyTorch ``.pth`` state dict with pickle and numpy
alone, so ImageNet weights published only for PyTorch can seed a Keras
model without installing PyTorch.

The format: five pickles (magic number, protocol, system info, the state
dict whose tensors point at storages by key, the list of storage keys),
then each storage's raw bytes behind an int64 element count. The unpickler
only ever builds ordered dicts and tensor references: any other class in
the file is refused, so a weights file cannot run code.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
from typing import BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class TorchWeightsError(ValueError):
    pass


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise TorchWeightsError(f"unsupported tensor storage {name}")
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _tensor_ref(storage, offset, size, stride, *_):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO):
        super().__init__(f)
        self.storage_types: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module.startswith("torch"):
            if name.endswith("Storage"):
                return _StorageType(name)
            if name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return _tensor_ref
        raise TorchWeightsError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _size, _view = pid
        self.storage_types[key] = storage_type.dtype
        return key


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a legacy ``torch.save`` file, as numpy arrays in
    PyTorch's logical layout (e.g. conv kernels out x in x h x w)."""
    with open(path, "rb") as f:
        try:
            if pickle.load(f) != LEGACY_MAGIC:
                raise TorchWeightsError(f"{path}: not a legacy PyTorch weights file")
            pickle.load(f), pickle.load(f)  # protocol version, system info
            unpickler = _StateDictUnpickler(f)
            state = unpickler.load()
            keys = pickle.load(f)
            storages = {}
            for key in keys:
                (count,) = struct.unpack("<q", f.read(8))
                dtype = unpickler.storage_types[key]
                storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype)
        except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as exc:
            raise TorchWeightsError(f"{path}: damaged weights file ({exc})") from None
    out = {}
    for name, (_, key, offset, size, stride) in state.items():
        flat = storages[key]
        step = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * step for s in stride), writeable=False)
        out[name] = np.array(view)
    return out
