"""The native core's build checks: stale builds are detected and reported."""

import pytest

from kbind import _native


def test_build_matches_checkout_sources():
    built = _native.ffi.string(_native.lib.kb_source_hash()).decode()
    assert built == _native._checkout_hash()


def test_stale_build_raises_with_instructions(monkeypatch):
    monkeypatch.setattr(_native, "_checkout_hash", lambda: "0000000000000000")
    with pytest.raises(ImportError, match="stale.*pip install --no-build-isolation -e ."):
        _native._load()


def test_missing_build_message(monkeypatch):
    monkeypatch.setattr(_native, "_LOAD_ERROR", ImportError("kbind's native core ... is not built"))
    with pytest.raises(ImportError, match="not built"):
        _native.call("kb_max_threads")


def test_c_errors_become_exceptions():
    err = _native.ffi.new("int64_t[]", 2)
    with pytest.raises(_native.NativeError, match="negative size"):
        _native.call("kb_fst_index", -1, 0, -1, _native.ffi.NULL, _native.ffi.NULL,
                     _native.ffi.NULL, _native.ffi.NULL, _native.ffi.NULL, 0, 0, err, err,
                     _native.ffi.NULL)
