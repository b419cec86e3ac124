"""The only module that touches the compiled native core (``cbridge/``).

Everything above this module sees torch tensors and Python exceptions:
:func:`call` runs a C function with an error buffer and raises
:class:`NativeError` with the C library's own message on failure, and
:func:`ptr` gives the C pointer of a contiguous CPU tensor (no copy).

If the extension is missing, or was built from other sources than the
checkout's ``cbridge/`` (a stale build), using it raises ImportError saying
how to rebuild.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

__all__ = ["NativeError", "ffi", "lib", "call", "ptr", "available", "max_threads"]

_REBUILD = ("rebuild it with `pip install --no-build-isolation -e .` (or `make install`) "
            "in the kbind checkout")


class NativeError(RuntimeError):
    """A failure reported by the C core (bad sizes, ids out of range, ...)."""


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
        raise NativeError(ffi.string(err).decode("utf-8", "replace") or f"{name} failed ({rc})")


_CTYPES = {
    torch.int32: "int32_t *", torch.int64: "int64_t *", torch.float32: "float *",
    torch.float64: "double *", torch.uint8: "uint8_t *",
}


def ptr(t, what: str = "tensor"):
    """C pointer to the data of a contiguous CPU tensor (NULL for None)."""
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
    return ffi.cast(ctype, t.data_ptr())


def max_threads() -> int:
    _require()
    return int(lib.kb_max_threads())


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
