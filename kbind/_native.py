"""The only module that touches the compiled native core (``cbridge/``).

Everything above this module sees torch tensors and Python exceptions:
:func:`call` runs a C function with an error buffer and raises
:class:`NativeError` with the C library's own message (and its ``KB_E*``
status as ``code``) on failure; :func:`ptr` gives the C pointer of a
contiguous CPU tensor (no copy) after checking that it has exactly the
number of entries the C function will read or write; :func:`as_c_array`
converts array-likes to the dtype a C function takes, refusing values that
the conversion would change (int64 -> int32 wrapping, float64 -> float32
overflow).

If the extension is missing, or was built from other sources than the
checkout's ``cbridge/`` (a stale build), using it raises ImportError saying
how to rebuild.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .arrays import checked_cast

__all__ = ["NativeError", "ffi", "lib", "call", "ptr", "as_c_array", "available",
           "max_threads", "den_best_isa", "KB_EINVAL", "KB_ENOMEM", "KB_ENOPATH"]

# the status codes of cbridge/kbind_native.h
KB_EINVAL = 1   # bad input
KB_ENOMEM = 2   # an allocation failed
KB_ENOPATH = 3  # valid input, but the search found no result

_REBUILD = ("rebuild it with `pip install --no-build-isolation -e .` (or `make install`) "
            "in the kbind checkout")


class NativeError(RuntimeError):
    """A failure reported by the C core (bad sizes, ids out of range, ...);
    ``code`` is its status (:data:`KB_EINVAL`, :data:`KB_ENOMEM`,
    :data:`KB_ENOPATH`)."""

    def __init__(self, message: str, code: int = KB_EINVAL):
        super().__init__(message)
        self.code = code


def _checkout_hash():
    """Hash of ../cbridge sources when running from a checkout, else None."""
    cbridge = Path(__file__).resolve().parent.parent / "cbridge"
    if not (cbridge / "kbind_native.h").is_file():
        return None
    h = hashlib.sha256()
    for p in sorted(list(cbridge.glob("*.c")) + list(cbridge.glob("*.h"))):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _load():
    try:
        from . import _kbind_native  # type: ignore[attr-defined]
    except ImportError as e:
        raise ImportError(f"kbind's native core (kbind._kbind_native) is not built: {_REBUILD}"
                          f" ({e})") from None
    built = _kbind_native.ffi.string(_kbind_native.lib.kb_source_hash()).decode()
    current = _checkout_hash()
    if current is not None and built != current:
        raise ImportError(f"kbind's native core is stale (built from sources {built}, "
                          f"checkout has {current}): {_REBUILD}")
    return _kbind_native.ffi, _kbind_native.lib


try:
    ffi, lib = _load()
    _LOAD_ERROR = None
except ImportError as _e:  # defer: importing kbind must work without the build
    ffi = lib = None
    _LOAD_ERROR = _e


def available() -> bool:
    return _LOAD_ERROR is None


def _require():
    if _LOAD_ERROR is not None:
        raise ImportError(str(_LOAD_ERROR))


def call(name: str, *args) -> None:
    """Call ``lib.<name>(*args, err, errlen)`` and raise NativeError on failure."""
    _require()
    err = ffi.new("char[]", 1024)
    rc = getattr(lib, name)(*args, err, 1024)
    if rc != 0:
        raise NativeError(ffi.string(err).decode("utf-8", "replace") or f"{name} failed ({rc})",
                          int(rc))


_CTYPES = {
    torch.int32: "int32_t *", torch.int64: "int64_t *", torch.float32: "float *",
    torch.float64: "double *", torch.uint8: "uint8_t *",
}


def ptr(t, n: int, what: str):
    """C pointer to the data of a contiguous CPU tensor (NULL for None).

    ``n``: the number of entries the C function reads or writes through it,
    as it derives them from its size arguments (e.g. ``num_arcs`` for an arc
    array, ``num_states + 1`` for CSR offsets, ``T * D`` for a (T, D)
    matrix); ``what``: the argument's name for messages. A tensor with a
    different number of entries raises ValueError, so that parallel arrays
    that disagree in length never reach C."""
    _require()
    if t is None:
        return ffi.NULL
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{what}: the C core needs a CPU tensor, got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{what}: the C core needs a contiguous tensor")
    ctype = _CTYPES.get(t.dtype)
    if ctype is None:
        raise TypeError(f"{what}: unsupported dtype {t.dtype}")
    if t.numel() != int(n):
        raise ValueError(f"{what}: the C core uses {int(n)} entries, the tensor has "
                         f"{t.numel()} (shape {tuple(t.shape)})")
    return ffi.cast(ctype, t.data_ptr())


_NUMPY = {torch.int32: np.int32, torch.int64: np.int64, torch.float32: np.float32,
          torch.float64: np.float64, torch.uint8: np.uint8}


def as_c_array(x, dtype: torch.dtype, what: str) -> torch.Tensor:
    """``x`` (array-like or tensor) as a contiguous CPU tensor of ``dtype``
    (one of int32, int64, float32, float64, uint8), sharing memory when it
    already is one; conversions that would change a value raise ValueError
    naming ``what`` and the entry (:func:`kbind.arrays.checked_cast`)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype == dtype:
            return t.contiguous()
        if t.dtype.is_floating_point and t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float32)  # float16 / bfloat16: exact in float32
        x = t.numpy()
    out = checked_cast(x, _NUMPY[dtype], what)
    # torch wants writable memory (a read-only array, e.g. from a buffer, is copied)
    return torch.from_numpy(out if out.flags.writeable else out.copy())


def max_threads() -> int:
    _require()
    return int(lib.kb_max_threads())


def den_best_isa() -> int:
    """The best instruction set of the chain den kernel on this CPU: 0 baseline,
    1 AVX2, 2 AVX-512 (an ``isa`` argument above it runs this one)."""
    _require()
    return int(lib.kb_den_best_isa())


IMPLS = ("auto", "torch", "c")


def use_c(impl: str, device, reasons=()) -> bool:
    """Whether a kernel with a C and a torch implementation runs in C here.

    ``impl``: ``"auto"`` (C when possible), ``"c"`` (raises ValueError with the
    reasons when not possible) or ``"torch"``; ``reasons``: the caller's own
    reasons against C (besides a non-CPU device and a missing build)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "torch":
        return False
    why = []
    if torch.device(device).type != "cpu":
        why.append(f"the C kernel runs on CPU tensors, not {device}")
    why.extend(reasons)
    if not why and not available():
        why.append("the native core is not built")
    if why and impl == "c":
        raise ValueError("impl='c' is not possible: " + "; ".join(why))
    return not why
