"""Kaldi tables: archives (``ark``) and script files (``scp``).

An archive is a concatenation of ``<key><space><object>``; a script file has
lines ``<key> <rxfilename>`` where the rxfilename is usually
``file.ark:<byte offset>`` (optionally with a matrix range
``[r0:r1]`` or ``[r0:r1,c0:c1]``). See :mod:`kbind.io.specifier` for the
specifier syntax and :mod:`kbind.io.holders` for the value kinds.

Public API::

    for key, mat in read_table("ark:feats.ark"): ...
    table = RandomAccessTable("scp:feats.scp"); mat = table["utt1"]; "utt1" in table
    with write_table("ark,scp:out.ark,out.scp") as w: w.write("utt1", mat)
    obj = read_object("final.mdl"); write_object("x.mat", mat, binary=False)

Errors in the data raise :class:`~kbind.io.errors.KaldiFormatError` with
the file, key and byte offset; entries before the bad one have already
been yielded, and a writer that fails keeps everything written before.
"""

from __future__ import annotations

import os
import re
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .errors import KaldiFormatError, KaldiIOError
from .holders import Holder, detect_holder, get_holder, holder_for_value
from .matrix import CompressionMethod
from .specifier import (PipeInput, open_rxfilename, open_wxfilename, parse_rspecifier,
                        parse_wspecifier, split_offset)
from .stream import KaldiInput

__all__ = ["read_table", "SequentialTableReader", "RandomAccessTable", "write_table",
           "TableWriter", "read_object", "write_object", "read_script"]

_WS = b" \t\n\r"


def _close_input(f) -> None:
    """Close a file or pipe, raising KaldiIOError if a pipe command failed."""
    import sys
    if f is sys.stdin.buffer:
        return
    try:
        if isinstance(f, PipeInput):
            # Drain so the command can finish, then check its status.
            while f.read(1 << 16):
                pass
            f.check()
    finally:
        f.close()


def _read_value(inp: KaldiInput, holder: Optional[Holder]) -> Any:
    """Read one object at the current position (``holder`` None = auto)."""
    h = holder or detect_holder(inp)
    if not h.marker:
        return h.read(inp, None)
    binary = inp.read_binary_marker()
    return h.read(inp, binary)


def _apply_range(value, rng: Optional[str], where: str):
    if rng is None:
        return value
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        raise KaldiFormatError(f"range [{rng}] applies only to matrices", filename=where)
    parts = [p.strip() for p in rng.split(",")]
    if len(parts) not in (1, 2):
        raise KaldiFormatError(f"bad matrix range [{rng}]", filename=where)
    out = value
    for axis, p in enumerate(parts):
        m = re.fullmatch(r"(\d*):(\d*)", p)
        if not m:
            raise KaldiFormatError(f"bad matrix range [{rng}]", filename=where)
        lo = int(m.group(1)) if m.group(1) else 0
        hi = int(m.group(2)) if m.group(2) else value.shape[axis] - 1
        if not (0 <= lo <= hi < value.shape[axis]):
            raise KaldiFormatError(f"range [{rng}] out of bounds for a "
                                   f"{value.shape[0]}x{value.shape[1]} matrix", filename=where)
        out = out[lo:hi + 1] if axis == 0 else out[:, lo:hi + 1]
    return np.ascontiguousarray(out)


def read_script(path: str) -> List[Tuple[str, str, int]]:
    """Lines of a script file as (key, rxfilename, line number)."""
    f, name, _ = open_rxfilename(path)
    out = []
    try:
        data = f.read()
    finally:
        _close_input(f)
    for i, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise KaldiFormatError("script line needs '<key> <rxfilename>', got "
                                   f"{line[:80]!r}", filename=name, line=i)
        out.append((parts[0], parts[1].strip(), i))
    return out


class _ObjectOpener:
    """Reads one object from an rxfilename, reusing the last opened file."""

    def __init__(self):
        self._path: Optional[str] = None
        self._f = None

    def read(self, rxfilename: str, holder: Optional[Holder], key: str):
        path, offset, rng = split_offset(rxfilename)
        if path.endswith("|") or path in ("", "-"):
            f, name, start = open_rxfilename(rxfilename if rng is None else path)
            inp = KaldiInput(f, name, start)
            inp.key = key
            try:
                value = _read_value(inp, holder)
            finally:
                _close_input(f)
            return _apply_range(value, rng, name)
        if self._path != path:
            self.close()
            try:
                self._f = open(path, "rb", buffering=1 << 16)
            except OSError as e:
                raise KaldiIOError(f"cannot open {path} for reading (key '{key}'): "
                                   f"{e.strerror}", path) from None
            self._path = path
            self._size = os.fstat(self._f.fileno()).st_size
        offset = offset or 0
        if offset > self._size:
            raise KaldiFormatError(f"offset {offset} is past the end of the file "
                                   f"({self._size} bytes)", filename=path, key=key,
                                   offset=offset)
        self._f.seek(offset)
        inp = KaldiInput(self._f, path, offset)
        inp.key = key
        return _apply_range(_read_value(inp, holder), rng, path)

    def close(self):
        if self._f is not None:
            self._f.close()
        self._f = None
        self._path = None


class SequentialTableReader:
    """Iterate over ``(key, value)`` of an rspecifier (Kaldi's
    ``SequentialTableReader``). Use as an iterator or context manager."""

    def __init__(self, rspecifier: str, kind: str = "auto"):
        self.rspecifier = rspecifier
        self.spec = parse_rspecifier(rspecifier)
        self.holder = None if kind == "auto" else get_holder(kind)

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        if self.spec.kind == "ark":
            return self._iter_archive()
        return self._iter_script()

    def _iter_archive(self):
        f, name, start = open_rxfilename(self.spec.rxfilename)
        inp = KaldiInput(f, name, start)
        ok = False
        try:
            while True:
                key = _read_key(inp)
                if key is None:
                    break
                inp.key = key
                try:
                    value = _read_value(inp, self.holder)
                except (KaldiFormatError, KaldiIOError):
                    if self.spec.permissive:
                        break
                    raise
                inp.key = None
                yield key, value
            ok = True
        finally:
            if ok:
                _close_input(f)
            else:
                try:
                    _close_input(f)
                except KaldiIOError:
                    pass

    def _iter_script(self):
        opener = _ObjectOpener()
        try:
            for key, rx, lineno in read_script(self.spec.rxfilename):
                try:
                    value = opener.read(rx, self.holder, key)
                except (KaldiFormatError, KaldiIOError) as e:
                    if self.spec.permissive:
                        continue
                    if isinstance(e, KaldiFormatError) and e.line is None:
                        e.args = (f"{e.args[0]} (from {self.spec.rxfilename} line {lineno})",)
                    raise
                yield key, value
        finally:
            opener.close()


def read_table(rspecifier: str, kind: str = "auto") -> Iterator[Tuple[str, Any]]:
    """Iterate over ``(key, value)`` pairs of a Kaldi table.

    >>> for utt, feats in read_table("ark:gunzip -c feats.ark.gz |"): ...

    ``kind``: one of :data:`kbind.io.holders.HOLDER_NAMES` (``matrix``,
    ``vector``, ``int32_vector``, ``posterior``, ``fst``, ``lattice``, ...);
    ``auto`` guesses from the bytes. Matrices and vectors come as numpy
    arrays (float32, or float64 for double objects).
    """
    return iter(SequentialTableReader(rspecifier, kind))


def _read_key(inp: KaldiInput) -> Optional[str]:
    inp.skip_whitespace()
    start = inp.offset
    chars = []
    while True:
        block = inp.peek(256)
        if not block:
            if chars:
                raise inp.error(f"unexpected end of file after key {b''.join(chars)[:80]!r}",
                                offset=start)
            return None
        m = re.search(rb"[ \t\n\r]", block)
        if m:
            chars.append(inp.read(m.start()))
            sep = inp.read(1)
            if sep == b"\n":
                # A newline right after the key belongs to the object (a text
                # FST starts with an empty line): give it back.
                inp.unread(sep)
            break
        chars.append(inp.read(len(block)))
    key = b"".join(chars)
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise inp.error(f"archive key is not valid text: {key[:40]!r}", offset=start) from None


class RandomAccessTable:
    """Random access by key (Kaldi's ``RandomAccessTableReader``).

    ``table[key]`` returns the value (KeyError naming the table if absent),
    ``key in table`` tests presence, ``keys()`` lists them. Script files are
    indexed from their lines and objects read on demand; archives on disk
    are indexed by byte offset on first use; archives from pipes are held in
    memory.
    """

    def __init__(self, rspecifier: str, kind: str = "auto"):
        self.rspecifier = rspecifier
        self.spec = parse_rspecifier(rspecifier)
        self.holder = None if kind == "auto" else get_holder(kind)
        self._opener = _ObjectOpener()
        self._index: Dict[str, str] = {}
        self._cache: Optional[Dict[str, Any]] = None
        if self.spec.kind == "scp":
            for key, rx, lineno in read_script(self.spec.rxfilename):
                if key in self._index:
                    raise KaldiFormatError(f"duplicate key '{key}' in script file",
                                           filename=self.spec.rxfilename, line=lineno)
                self._index[key] = rx
        else:
            self._index_archive()

    def _index_archive(self) -> None:
        path, offset, _ = split_offset(self.spec.rxfilename)
        is_file = not (path.strip().endswith("|") or path in ("", "-"))
        if not is_file:
            self._cache = {}
            for key, value in SequentialTableReader(self.rspecifier,
                                                    self.holder.name if self.holder else "auto"):
                self._cache[key] = value
            return
        f, name, start = open_rxfilename(self.spec.rxfilename)
        inp = KaldiInput(f, name, start)
        try:
            while True:
                key = _read_key(inp)
                if key is None:
                    break
                inp.key = key
                obj_offset = inp.offset
                try:
                    _read_value(inp, self.holder)
                except (KaldiFormatError, KaldiIOError):
                    if self.spec.permissive:
                        break
                    raise
                self._index[key] = f"{path}:{obj_offset}"
        finally:
            f.close()

    def __getitem__(self, key: str):
        if self._cache is not None:
            if key not in self._cache:
                raise KeyError(f"key '{key}' not found in {self.rspecifier}")
            return self._cache[key]
        rx = self._index.get(key)
        if rx is None:
            raise KeyError(f"key '{key}' not found in {self.rspecifier}")
        try:
            return self._opener.read(rx, self.holder, key)
        except (KaldiFormatError, KaldiIOError):
            if self.spec.permissive:
                raise KeyError(f"key '{key}' could not be read from {self.rspecifier} "
                               "(permissive mode)") from None
            raise

    def __contains__(self, key: str) -> bool:
        if self._cache is not None:
            return key in self._cache
        if key not in self._index:
            return False
        if self.spec.permissive:
            try:
                self[key]
            except KeyError:
                return False
        return True

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> List[str]:
        return list(self._cache if self._cache is not None else self._index)

    def __len__(self) -> int:
        return len(self.keys())

    def close(self) -> None:
        self._opener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TableWriter:
    """Writes ``(key, value)`` entries to a wspecifier (Kaldi's
    ``TableWriter``); a context manager. ``compression`` compresses matrices
    with a :class:`~kbind.io.matrix.CompressionMethod` (binary only)."""

    def __init__(self, wspecifier: str, kind: Optional[str] = None,
                 compression: Optional[CompressionMethod] = None):
        self.wspecifier = wspecifier
        self.spec = parse_wspecifier(wspecifier)
        self.holder = get_holder(kind) if kind else None
        self.compression = compression
        self._ark = self._scp = None
        self._scp_targets: Optional[Dict[str, str]] = None
        if self.spec.ark_wxfilename is not None:
            self._ark, self._ark_name = open_wxfilename(self.spec.ark_wxfilename)
            if self.spec.scp_wxfilename is not None:
                try:
                    self._ark_pos = self._ark.tell()
                except OSError:
                    self._ark.close()
                    raise KaldiIOError(f"cannot write an scp for {self._ark_name}: the archive "
                                       "must be a seekable file (not a pipe or stdout)",
                                       self._ark_name) from None
                self._scp, self._scp_name = open_wxfilename(self.spec.scp_wxfilename)
        else:
            # scp-only: each object goes to the file its scp line names.
            self._scp_targets = {k: rx for k, rx, _ in read_script(self.spec.scp_wxfilename)}

    def _write_object(self, f: BinaryIO, value, binary: bool, holder: Holder) -> None:
        if holder.marker and binary:
            f.write(b"\0B")
        if holder.name == "matrix" and self.compression is not None:
            holder.write(f, value, binary, compression=self.compression)
        else:
            holder.write(f, value, binary)

    def write(self, key: str, value) -> None:
        if not key or any(c.isspace() for c in key):
            raise ValueError(f"invalid table key {key!r}: keys must be non-empty and contain "
                             "no whitespace")
        holder = self.holder or holder_for_value(value)
        binary = self.spec.binary
        if self._scp_targets is not None:
            target = self._scp_targets.get(key)
            if target is None:
                if self.spec.permissive:
                    return
                raise KeyError(f"key '{key}' is not in the script file "
                               f"{self.spec.scp_wxfilename}")
            f, _ = open_wxfilename(target)
            try:
                self._write_object(f, value, binary, holder)
            finally:
                f.close()
            return
        import io as _io
        buf = _io.BytesIO()
        buf.write(key.encode("utf-8") + b" ")
        start = buf.tell()
        self._write_object(buf, value, binary, holder)
        data = buf.getvalue()
        self._ark.write(data)
        if self._scp is not None:
            self._scp.write(f"{key} {self.spec.ark_wxfilename}:{self._ark_pos + start}\n"
                            .encode("utf-8"))
            self._ark_pos += len(data)
        if self.spec.flush:
            self.flush()

    def flush(self) -> None:
        for f in (self._ark, self._scp):
            if f is not None:
                f.flush()

    def close(self) -> None:
        errors = []
        for f in (self._ark, self._scp):
            if f is not None:
                try:
                    f.close()
                except (OSError, KaldiIOError) as e:
                    errors.append(e)
        self._ark = self._scp = None
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_table(wspecifier: str, kind: Optional[str] = None,
                compression: Optional[CompressionMethod] = None) -> TableWriter:
    """A :class:`TableWriter` for ``wspecifier``; use with ``with``.

    >>> with write_table("ark,scp:feats.ark,feats.scp") as w:
    ...     w.write("utt1", feats)
    """
    return TableWriter(wspecifier, kind, compression)


def read_object(rxfilename: str, kind: str = "auto"):
    """Read one Kaldi object from a file, pipe, ``-`` or ``file:offset``
    (Kaldi's ``ReadKaldiObject``)."""
    path, offset, rng = split_offset(rxfilename)
    f, name, start = open_rxfilename(rxfilename if rng is None else
                                     (f"{path}:{offset}" if offset is not None else path))
    inp = KaldiInput(f, name, start)
    try:
        value = _read_value(inp, None if kind == "auto" else get_holder(kind))
    except BaseException:
        try:
            _close_input(f)
        except KaldiIOError:
            pass
        raise
    _close_input(f)
    return _apply_range(value, rng, name)


def write_object(wxfilename: str, obj, binary: bool = True, kind: Optional[str] = None) -> None:
    """Write one Kaldi object to a file, pipe or ``-`` (``WriteKaldiObject``)."""
    holder = get_holder(kind) if kind else holder_for_value(obj)
    f, _ = open_wxfilename(wxfilename)
    try:
        if holder.marker and binary:
            f.write(b"\0B")
        holder.write(f, obj, binary)
    finally:
        f.close()
