"""Kaldi matrices, vectors and compressed matrices.

Binary layout (after the ``\\0B`` marker of the object):

* ``FM``/``DM`` then int32 rows, int32 cols, rows*cols float32/float64
  row-major. Kaldi has no 0xN matrices: empty is 0x0.
* ``FV``/``DV`` then int32 dim and the values.
* ``CM``/``CM2``/``CM3`` (``CompressedMatrix``) then a 16-byte global header
  (float32 min_value, float32 range, int32 rows, int32 cols, no size bytes)
  and the data:

  - ``CM2``: uint16 per value, row-major; value = min + u * float32(range/65535).
  - ``CM3``: uint8 per value, row-major; value = min + u * float32(range/255).
  - ``CM`` (speech features): per column four uint16 quantiles
    (p0, p25, p75, p100) on the same 16-bit grid, then one byte per value
    stored column-major, mapped piecewise-linearly: bytes 0..64 cover
    [p0, p25], 64..192 cover [p25, p75] and 192..255 cover [p75, p100].

Text layout: a matrix is `` [`` then one line per row (``\\n  v v v ``) then
``]\\n``; a vector is `` [ v v v ]\\n``. Values have 7 significant digits.

Compression follows Kaldi's ``CompressedMatrix`` exactly (the float32 and
double arithmetic of ``ComputeGlobalHeader``, ``ComputeColHeader``,
``FloatToUint16`` and ``FloatToChar``, down to what x86-64 makes of a NaN cast
to int in a constant column), so the bytes equal Kaldi's for all seven
methods; ``tests/io/test_matrix.py`` compares them with Kaldi's ``copy-feats
--compress=true`` on the same matrices.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .stream import KaldiInput, format_float, parse_float, write_int32

__all__ = [
    "CompressionMethod", "CompressedMatrix", "read_matrix", "write_matrix",
    "read_vector", "write_vector", "compress", "decompress",
]

_HDR = struct.Struct("<ffii")
_F32 = np.float32


class CompressionMethod(enum.IntEnum):
    """Kaldi's ``CompressionMethod`` (values as in compressed-matrix.h)."""

    AUTO = 1
    SPEECH_FEATURE = 2
    TWO_BYTE_AUTO = 3
    TWO_BYTE_SIGNED_INTEGER = 4
    ONE_BYTE_AUTO = 5
    ONE_BYTE_UNSIGNED_INTEGER = 6
    ONE_BYTE_ZERO_ONE = 7


@dataclass
class CompressedMatrix:
    """A matrix in Kaldi's compressed form, kept compressed until asked.

    ``token`` is ``CM``, ``CM2`` or ``CM3``; ``data`` holds the raw payload
    after the global header (column headers included for ``CM``).
    """

    token: str
    min_value: float
    range: float
    num_rows: int
    num_cols: int
    data: bytes

    @property
    def shape(self):
        return (self.num_rows, self.num_cols)

    def to_numpy(self) -> np.ndarray:
        return decompress(self)

    def __array__(self, dtype=None, copy=None):
        out = self.to_numpy()
        return out if dtype is None else out.astype(dtype)

    def write(self, f: BinaryIO, binary: bool = True) -> None:
        if not binary:
            _write_text_matrix(f, self.to_numpy())
            return
        f.write(self.token.encode() + b" ")
        f.write(_HDR.pack(self.min_value, self.range, self.num_rows, self.num_cols))
        f.write(self.data)


# -- decompression ----------------------------------------------------------------

def _uint16_to_float(min_value, range_, u):
    # Kaldi: min_value + range * 1.52590218966964e-05F * value, all float32.
    with np.errstate(over="ignore", invalid="ignore"):
        inc = _F32(range_) * _F32(1.52590218966964e-05)
        return _F32(min_value) + inc * np.asarray(u, dtype=np.float32)


def decompress(cm: CompressedMatrix) -> np.ndarray:
    """Kaldi's ``CompressedMatrix::CopyToMat`` (bit-exact)."""
    rows, cols = cm.num_rows, cm.num_cols
    mn, rg = _F32(cm.min_value), _F32(cm.range)
    if rows == 0 or cols == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if cm.token == "CM2":
        inc = _F32(np.float64(rg) * (1.0 / 65535.0))
        u = np.frombuffer(cm.data, dtype="<u2", count=rows * cols).astype(np.float32)
        return (mn + u * inc).reshape(rows, cols)
    if cm.token == "CM3":
        inc = _F32(np.float64(rg) * (1.0 / 255.0))
        u = np.frombuffer(cm.data, dtype="<u1", count=rows * cols).astype(np.float32)
        return (mn + u * inc).reshape(rows, cols)
    if cm.token == "CM":
        headers = np.frombuffer(cm.data, dtype="<u2", count=4 * cols).reshape(cols, 4)
        q = _uint16_to_float(mn, rg, headers)  # (cols, 4) float32
        p0, p25, p75, p100 = (q[:, i][None, :] for i in range(4))
        b = np.frombuffer(cm.data, dtype=np.uint8, offset=8 * cols,
                          count=rows * cols).reshape(cols, rows).T.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # in the branches not taken
            lo = (p0.astype(np.float64) + ((p25 - p0) * b).astype(np.float64) * (1 / 64.0))
            mid = (p25.astype(np.float64)
                   + ((p75 - p25) * (b - 64)).astype(np.float64) * (1 / 128.0))
            hi = (p75.astype(np.float64)
                  + ((p100 - p75) * (b - 192)).astype(np.float64) * (1 / 63.0))
        out = np.where(b <= 64, lo, np.where(b <= 192, mid, hi))
        return np.ascontiguousarray(out.astype(np.float32))
    raise ValueError(f"unknown compressed matrix token {cm.token}")


# -- compression --------------------------------------------------------------

def _global_header(mat: np.ndarray, method: CompressionMethod):
    rows, cols = mat.shape
    if method == CompressionMethod.AUTO:
        method = CompressionMethod.SPEECH_FEATURE if rows > 8 else CompressionMethod.TWO_BYTE_AUTO
    if method == CompressionMethod.SPEECH_FEATURE:
        token = "CM"
    elif method in (CompressionMethod.TWO_BYTE_AUTO, CompressionMethod.TWO_BYTE_SIGNED_INTEGER):
        token = "CM2"
    else:
        token = "CM3"
    if method in (CompressionMethod.SPEECH_FEATURE, CompressionMethod.TWO_BYTE_AUTO,
                  CompressionMethod.ONE_BYTE_AUTO):
        mn = _F32(mat.min())
        mx = _F32(mat.max())
        if mx == mn:
            # Kaldi adds in double (``min + (1.0 + fabs(min))``), then stores a float.
            with np.errstate(over="ignore"):
                mx = _F32(np.float64(mn) + (1.0 + abs(np.float64(mn))))
            if not np.isfinite(mx):
                raise ValueError(f"cannot compress a constant matrix of {mn}: Kaldi's "
                                 "range for it overflows float")
        with np.errstate(over="ignore"):
            rg = _F32(mx - mn)
    elif method == CompressionMethod.TWO_BYTE_SIGNED_INTEGER:
        mn, rg = _F32(-32768.0), _F32(65535.0)
    elif method == CompressionMethod.ONE_BYTE_UNSIGNED_INTEGER:
        mn, rg = _F32(0.0), _F32(255.0)
    else:
        mn, rg = _F32(0.0), _F32(1.0)
    return token, mn, rg


def _cast_to_int(x: np.ndarray) -> np.ndarray:
    """C's ``static_cast<int>(double)`` as x86-64 executes it (``cvttsd2si``):
    truncation toward zero, and INT_MIN for NaN or a value outside int32. Kaldi
    meets both in constant columns, where a 0/0 or x/0 ratio reaches the cast."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = (x > -2147483649.0) & (x < 2147483648.0)
        return np.where(ok, np.trunc(np.where(ok, x, 0.0)), -2147483648.0).astype(np.int64)


def _float_to_uint(mn, rg, values, scale: int) -> np.ndarray:
    """Kaldi ``FloatToUint16`` / ``FloatToUint8``: the clamps let NaN through, and
    the int result is narrowed modulo 2**16 (or 2**8)."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = (np.asarray(values, dtype=np.float32) - mn) / rg
        f = np.where(f > 1.0, _F32(1.0), np.where(f < 0.0, _F32(0.0), f))
        return _cast_to_int((f * _F32(scale)).astype(np.float64) + 0.499) & (
            0xFFFF if scale == 65535 else 0xFF)


def _col_headers(mn, rg, mat: np.ndarray) -> np.ndarray:
    """Kaldi ``ComputeColHeader`` for every column at once: (cols, 4) uint16."""
    rows, cols = mat.shape
    s = np.sort(mat, axis=0)
    if rows >= 5:
        q = rows // 4
        picks = [s[0], s[q], s[3 * q], s[rows - 1]]
    else:
        picks = [s[min(i, rows - 1)] for i in range(4)]
    u = [_float_to_uint(mn, rg, p, 65535) for p in picks]
    p0 = np.minimum(u[0], 65532)
    p25 = np.minimum(np.maximum(u[1], p0 + 1), 65533) if rows > 1 else p0 + 1
    p75 = np.minimum(np.maximum(u[2], p25 + 1), 65534) if rows > 2 else p25 + 1
    p100 = np.maximum(u[3], p75 + 1) if rows > 3 else p75 + 1
    return np.stack([p0, p25, p75, p100], axis=1).astype(np.uint16)


def _float_to_char(p0, p25, p75, p100, v):
    """Kaldi ``FloatToChar`` (float32 ratios, +0.5 in double, C's int cast)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f_lo = (v - p0) / (p25 - p0)
        f_mid = (v - p25) / (p75 - p25)
        f_hi = (v - p75) / (p100 - p75)
        a_lo = np.clip(_cast_to_int((f_lo * _F32(64)).astype(np.float64) + 0.5), 0, 64)
        a_mid = np.clip(64 + _cast_to_int((f_mid * _F32(128)).astype(np.float64) + 0.5), 64, 192)
        a_hi = np.clip(192 + _cast_to_int((f_hi * _F32(63)).astype(np.float64) + 0.5), 192, 255)
    return np.where(v < p25, a_lo, np.where(v < p75, a_mid, a_hi)).astype(np.uint8)


def compress(mat, method: CompressionMethod = CompressionMethod.AUTO) -> CompressedMatrix:
    """Compress a matrix as Kaldi's ``CompressedMatrix(mat, method)``."""
    mat = np.asarray(_to_numpy(mat), dtype=np.float32)
    if mat.ndim != 2:
        raise ValueError(f"compress expects a 2-D matrix, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError("cannot compress a matrix with NaN or infinite values")
    rows, cols = mat.shape
    if rows == 0 or cols == 0:
        raise ValueError("Kaldi cannot compress an empty matrix (write it uncompressed)")
    token, mn, rg = _global_header(mat, CompressionMethod(method))
    if token == "CM2":
        data = _float_to_uint(mn, rg, mat, 65535).astype("<u2").tobytes()
    elif token == "CM3":
        data = _float_to_uint(mn, rg, mat, 255).astype("<u1").tobytes()
    else:
        headers = _col_headers(mn, rg, mat)
        q = _uint16_to_float(mn, rg, headers)
        p0, p25, p75, p100 = (q[:, i][None, :] for i in range(4))
        bytes_ = _float_to_char(p0, p25, p75, p100, mat)
        data = headers.astype("<u2").tobytes() + np.ascontiguousarray(bytes_.T).tobytes()
    return CompressedMatrix(token, float(mn), float(rg), rows, cols, data)


# -- matrices and vectors: read ------------------------------------------------------

def _to_numpy(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return x


def _read_compressed(inp: KaldiInput, token: str) -> CompressedMatrix:
    start = inp.offset
    mn, rg, rows, cols = _HDR.unpack(inp.read(16, "compressed matrix header"))
    if rows < 0 or cols < 0 or (rows == 0) != (cols == 0) and rows * cols != 0:
        raise inp.error(f"bad compressed matrix size {rows}x{cols}", offset=start)
    if token == "CM2":
        n = 2 * rows * cols
    elif token == "CM3":
        n = rows * cols
    else:
        n = 8 * cols + rows * cols
    data = inp.read(n, f"compressed matrix data ({rows}x{cols})")
    return CompressedMatrix(token, mn, rg, rows, cols, data)


def _read_dims(inp: KaldiInput, what: str):
    start = inp.offset
    rows = inp.read_int32(True, f"{what} rows")
    cols = inp.read_int32(True, f"{what} cols")
    if rows < 0 or cols < 0:
        raise inp.error(f"negative {what} size {rows}x{cols}", offset=start)
    return rows, cols


def read_matrix(inp: KaldiInput, binary: bool, keep_compressed: bool = False):
    """Kaldi ``Matrix::Read``: float32 (``FM``), float64 (``DM``) or a
    compressed matrix, which is decompressed unless ``keep_compressed``."""
    if not binary:
        return _read_text_matrix(inp)
    start = inp.offset
    token = inp.read_token("matrix type token")
    if token in ("FM", "DM"):
        rows, cols = _read_dims(inp, "matrix")
        dtype = np.float32 if token == "FM" else np.float64
        data = inp.read_array(rows * cols, dtype, f"matrix data ({rows}x{cols})")
        return data.reshape(rows, cols)
    if token in ("CM", "CM2", "CM3"):
        cm = _read_compressed(inp, token)
        return cm if keep_compressed else decompress(cm)
    raise inp.error(f"expected matrix token FM, DM, CM, CM2 or CM3, got {token!r}", offset=start)


def read_vector(inp: KaldiInput, binary: bool):
    """Kaldi ``Vector::Read``: ``FV`` (float32) or ``DV`` (float64)."""
    if not binary:
        return _read_text_vector(inp)
    start = inp.offset
    token = inp.read_token("vector type token")
    if token not in ("FV", "DV"):
        raise inp.error(f"expected vector token FV or DV, got {token!r}", offset=start)
    dim = inp.read_int32(True, "vector dim")
    if dim < 0:
        raise inp.error(f"negative vector dim {dim}", offset=start)
    return inp.read_array(dim, np.float32 if token == "FV" else np.float64, f"vector data ({dim})")


def _read_bracketed(inp: KaldiInput, what: str) -> bytes:
    """Bytes between ``[`` and ``]`` (exclusive), consuming both."""
    inp.skip_whitespace()
    start = inp.offset
    if inp.peek(1) != b"[":
        got = inp.peek(8)
        raise inp.error(f"expected '[' to start a text {what}, got {got!r}", offset=start)
    inp.read(1)
    chunks = []
    while True:
        # Read in blocks; anything after ']' is pushed back for the next reader.
        block = inp.peek(65536)
        if not block:
            raise inp.error(f"unexpected end of file inside text {what} (no ']')", offset=start)
        pos = block.find(b"]")
        if pos >= 0:
            chunks.append(inp.read(pos))
            inp.read(1)
            return b"".join(chunks)
        chunks.append(inp.read(len(block)))


def _parse_row(tokens, inp, start, what):
    try:
        return [float(t) for t in tokens]
    except ValueError:
        try:
            return [parse_float(t.decode()) for t in tokens]
        except ValueError:
            raise inp.error(f"non-numeric value in text {what}", offset=start) from None


def _read_text_matrix(inp: KaldiInput) -> np.ndarray:
    start = inp.offset
    body = _read_bracketed(inp, "matrix")
    lines = [ln.split() for ln in body.split(b"\n")]
    rows = [ln for ln in lines if ln]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    cols = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != cols:
            raise inp.error(f"matrix has inconsistent #cols: {cols} vs. {len(r)} "
                            f"(processing row {i})", offset=start)
    flat = np.array(_parse_row([t for r in rows for t in r], inp, start, "matrix"),
                    dtype=np.float64)
    return flat.astype(np.float32).reshape(len(rows), cols)


def _read_text_vector(inp: KaldiInput) -> np.ndarray:
    start = inp.offset
    body = _read_bracketed(inp, "vector")
    vals = _parse_row(body.split(), inp, start, "vector")
    return np.array(vals, dtype=np.float64).astype(np.float32)


# -- matrices and vectors: write ----------------------------------------------------

def _write_text_matrix(f: BinaryIO, mat: np.ndarray, digits: int = 7) -> None:
    if mat.size == 0:
        f.write(b" [ ]\n")
        return
    out = [b" ["]
    for row in mat:
        out.append(b"\n  " + " ".join(format_float(float(v), digits) for v in row).encode() + b" ")
    out.append(b"]\n")
    f.write(b"".join(out))


def write_matrix(f: BinaryIO, mat, binary: bool = True,
                 compression: CompressionMethod | None = None) -> None:
    """Write a matrix (numpy or torch; float32 -> ``FM``, float64 -> ``DM``),
    optionally compressed with a Kaldi ``CompressionMethod``."""
    if isinstance(mat, CompressedMatrix):
        mat.write(f, binary)
        return
    mat = np.asarray(_to_numpy(mat))
    if mat.ndim != 2:
        raise ValueError(f"a Kaldi matrix must be 2-D, got shape {mat.shape}")
    if mat.dtype not in (np.float32, np.float64):
        mat = mat.astype(np.float32)
    if mat.size == 0:
        mat = mat.reshape(0, 0)
    if not binary:
        _write_text_matrix(f, mat, 7 if mat.dtype == np.float32 else 17)
        return
    if compression is not None and mat.size:
        compress(mat, compression).write(f, True)
        return
    f.write(b"FM " if mat.dtype == np.float32 else b"DM ")
    write_int32(f, mat.shape[0])
    write_int32(f, mat.shape[1])
    f.write(np.ascontiguousarray(mat, dtype=mat.dtype.newbyteorder("<")).tobytes())


def write_vector(f: BinaryIO, vec, binary: bool = True) -> None:
    vec = np.asarray(_to_numpy(vec))
    if vec.ndim != 1:
        raise ValueError(f"a Kaldi vector must be 1-D, got shape {vec.shape}")
    if vec.dtype not in (np.float32, np.float64):
        vec = vec.astype(np.float32)
    if not binary:
        digits = 7 if vec.dtype == np.float32 else 17
        f.write(b" [ " + "".join(format_float(float(v), digits) + " " for v in vec).encode()
                + b"]\n")
        return
    f.write(b"FV " if vec.dtype == np.float32 else b"DV ")
    write_int32(f, vec.shape[0])
    f.write(np.ascontiguousarray(vec, dtype=vec.dtype.newbyteorder("<")).tobytes())
