"""Low-level reading and writing of Kaldi's serialisation primitives.

Kaldi writes every object either in binary mode (the object starts with the
two bytes ``\\0B``) or in text mode. The primitives are:

* tokens such as ``FM`` or ``<TransitionModel>``: ASCII without whitespace,
  followed by one space (binary and text);
* basic types (int32, float, double): in binary a size byte (4 or 8) followed
  by the little-endian value; in text the decimal value followed by a space.
  Unsigned types get the size byte ``-sizeof(T)``: a uint32 is ``0xfc``
  followed by the value (``TableEventMap`` stores its size this way);
* integer vectors inside objects (Kaldi ``WriteIntegerVector``): in binary a
  size byte, an int32 count and the raw values; in text ``[ 1 2 3 ]`` and a
  newline;
* float vectors (``Vector<float>``) are in :mod:`kbind.io.matrix`; the text
  form as Kaldi's ``Vector::Read`` parses it (no newline inside, the newline
  after ``]`` consumed) is :meth:`KaldiInput.read_text_float_vector`.

:class:`KaldiInput` wraps a byte stream (file, pipe or stdin) and counts the
bytes consumed, so every error can name the byte offset even for pipes,
which cannot ``tell()``; sizes read from the data are checked against the
bytes left (pipes are read in chunks), so a corrupt count gives a
:class:`KaldiFormatError`, not a huge allocation. Readers of objects take a
``KaldiInput`` and a ``binary`` flag, exactly as Kaldi's
``Read(std::istream&, bool binary)``. Writers take a binary file object and
the same flag. :class:`KaldiObject` adds ``from_file``/``from_bytes``/
``to_file``/``to_bytes`` (with the ``\\0B`` marker) to such a class.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
from pathlib import Path
from typing import BinaryIO, Optional, Tuple, Type, TypeVar

import numpy as np

from .errors import KaldiFormatError

__all__ = [
    "KaldiInput", "KaldiObject", "write_token", "write_int32", "write_uint32",
    "write_float", "write_double", "write_bool", "write_int32_vector_raw",
    "write_binary_marker", "format_float", "parse_float",
]

_WHITESPACE = b" \t\n\r\v\f"
_WS_RE = re.compile(rb"[ \t\n\r\v\f]")
_INT32 = struct.Struct("<i")
_INT32_SIZED = struct.Struct("<Bi")
_UINT32 = struct.Struct("<I")
_CHUNK = 1 << 24
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")


class KaldiInput:
    """A byte stream with look-ahead and a running byte offset.

    Parameters
    ----------
    fileobj: a binary file object opened for reading (``read(n)`` blocks
        until ``n`` bytes or EOF, as buffered files and pipes do).
    name: the file name or pipe command used in error messages.
    offset: the byte offset of the first byte of ``fileobj`` within the
        named file (for ``file.ark:1234`` scp entries).
    """

    def __init__(self, fileobj: BinaryIO, name: str, offset: int = 0):
        self.fileobj = fileobj
        self.name = name
        self.offset = offset
        self.key: Optional[str] = None
        self._ahead = b""

    # -- errors -----------------------------------------------------------
    def error(self, message: str, offset: Optional[int] = None) -> KaldiFormatError:
        """An exception naming this stream, the current key and an offset."""
        return KaldiFormatError(message, filename=self.name, key=self.key,
                                offset=self.offset if offset is None else offset)

    # -- raw bytes ----------------------------------------------------------
    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes without consuming them (fewer only at EOF)."""
        while len(self._ahead) < n:
            chunk = self.fileobj.read(n - len(self._ahead))
            if not chunk:
                break
            self._ahead += chunk
        return self._ahead[:n]

    def read(self, n: int, what: str = "data") -> bytes:
        """Exactly ``n`` bytes; a truncated stream raises KaldiFormatError."""
        if n < 0:
            raise self.error(f"negative size {n} while reading {what}")
        self._check_size(n, what)
        if self._ahead:
            head = self._ahead[:n]
            self._ahead = self._ahead[n:]
            rest = n - len(head)
            data = head + (self._read_exact(rest) if rest else b"")
        else:
            data = self._read_exact(n)
        if len(data) != n:
            raise self.error(
                f"unexpected end of file while reading {what} "
                f"(needed {n} bytes, got {len(data)})", offset=self.offset + len(data))
        self.offset += n
        return data

    def remaining(self) -> Optional[int]:
        """Bytes left in a regular file (None for pipes and unknown streams)."""
        try:
            if not self.fileobj.seekable():
                return None
            import os
            size = os.fstat(self.fileobj.fileno()).st_size
            return size - self.fileobj.tell() + len(self._ahead)
        except (AttributeError, OSError, ValueError):
            try:
                buf = self.fileobj.getbuffer()  # BytesIO
                return len(buf) - self.fileobj.tell() + len(self._ahead)
            except (AttributeError, ValueError):
                return None

    def _check_size(self, nbytes: int, what: str) -> None:
        """Fail early when a size read from the data exceeds what is left,
        instead of allocating it (a corrupt header can claim terabytes)."""
        if nbytes <= _CHUNK:
            return
        left = self.remaining()
        if left is not None and nbytes > left:
            raise self.error(f"unexpected end of file while reading {what} "
                             f"(needs {nbytes} bytes, {left} left)")

    def _read_exact(self, n: int) -> bytes:
        parts = []
        got = 0
        while got < n:
            chunk = self.fileobj.read(min(n - got, _CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def read_array(self, count: int, dtype, what: str = "data") -> np.ndarray:
        """``count`` little-endian values of ``dtype`` as a writable array."""
        dtype = np.dtype(dtype).newbyteorder("<")
        nbytes = int(count) * dtype.itemsize
        if count < 0:
            raise self.error(f"negative element count {count} while reading {what}")
        self._check_size(nbytes, what)
        if nbytes > _CHUNK and self.remaining() is None:
            # Unknown length (a pipe): grow with the data rather than trust
            # the size, so a corrupt count fails at EOF without a huge alloc.
            raw = self.read(nbytes, what)
            return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        out = np.empty(count, dtype=dtype)
        view = memoryview(out).cast("B")
        start = self.offset
        pos = 0
        if self._ahead:
            k = min(len(self._ahead), nbytes)
            view[:k] = self._ahead[:k]
            self._ahead = self._ahead[k:]
            pos = k
        readinto = getattr(self.fileobj, "readinto", None)
        while pos < nbytes:
            if readinto is not None:
                got = readinto(view[pos:])
            else:
                chunk = self.fileobj.read(nbytes - pos)
                got = len(chunk) if chunk else 0
                view[pos:pos + got] = chunk or b""
            if not got:
                raise self.error(
                    f"unexpected end of file while reading {what} "
                    f"(needed {nbytes} bytes, got {pos})", offset=start + pos)
            pos += got
        self.offset += nbytes
        return out.astype(dtype.newbyteorder("="), copy=False)

    def unread(self, data: bytes) -> None:
        """Push back bytes just read (they are read again next)."""
        self._ahead = data + self._ahead
        self.offset -= len(data)

    def at_eof(self) -> bool:
        return not self.peek(1)

    # -- whitespace and tokens ---------------------------------------------------
    def skip_whitespace(self) -> None:
        while True:
            c = self.peek(1)
            if not c or c not in _WHITESPACE:
                return
            self.read(1)

    def read_token(self, what: str = "token") -> str:
        """Kaldi ``ReadToken``: skip whitespace, read up to whitespace, then
        consume exactly one whitespace character (if present)."""
        self.skip_whitespace()
        start = self.offset
        n = 32
        while True:
            buf = self.peek(n)
            m = _WS_RE.search(buf)
            if m is not None or len(buf) < n:
                end = m.start() if m is not None else len(buf)
                tok = self.read(end)
                if m is not None:
                    self.read(1)
                break
            n *= 4
        if not tok:
            raise self.error(f"expected {what}, found end of file", offset=start)
        try:
            return tok.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"expected {what}, found non-text bytes", offset=start) from None

    def expect_token(self, token: str) -> None:
        start = self.offset
        got = self.read_token(f"token {token}")
        if got != token:
            raise self.error(f"expected token {token}, got {got!r}", offset=start)

    def expect_final_token(self, token: str) -> None:
        """:meth:`expect_token`, also requiring the whitespace Kaldi's
        ``ReadToken`` insists on after a token (so a stream truncated right
        after the closing token of an object is an error, as in Kaldi)."""
        self.skip_whitespace()
        start = self.offset
        if self.peek(len(token) + 1) == token.encode("ascii", "replace"):
            raise self.error(f"unexpected end of file after token {token} "
                             "(expected a space after it)", offset=start + len(token))
        self.expect_token(token)

    @contextlib.contextmanager
    def wrap_errors(self, start: Optional[int] = None):
        """Context manager turning a plain ValueError (IndexError, KeyError,
        OverflowError) from a consistency check into a KaldiFormatError that
        names this stream; KaldiFormatErrors pass through."""
        try:
            yield self
        except KaldiFormatError:
            raise
        except (ValueError, IndexError, KeyError, OverflowError) as exc:
            raise self.error(f"invalid object: {exc}", offset=start) from exc

    def read_binary_marker(self) -> bool:
        """Kaldi ``InitKaldiInputStream``: consume ``\\0B`` and return True
        if present, else return False (text mode)."""
        if self.peek(2) == b"\0B":
            self.read(2)
            return True
        return False

    # -- basic types -----------------------------------------------------
    def read_int32(self, binary: bool, what: str = "int32") -> int:
        if binary:
            start = self.offset
            raw = self.read(5, what)
            if raw[0] != 4:
                raise self.error(f"expected int32 ({what}) with size byte 4, got {raw[0]}",
                                 offset=start)
            return _INT32_SIZED.unpack(raw)[1]
        start = self.offset
        tok = self.read_token(what)
        try:
            return int(tok)
        except ValueError:
            raise self.error(f"expected integer ({what}), got {tok!r}", offset=start) from None

    def read_uint32(self, binary: bool, what: str = "uint32") -> int:
        """Kaldi ``ReadBasicType<uint32>``: size byte 0xfc (= -4) in binary."""
        start = self.offset
        if binary:
            size = self.read(1, what)[0]
            if size != 0xFC:
                raise self.error(f"expected uint32 ({what}) with size byte -4 (0xfc), got "
                                 f"{size if size < 128 else size - 256}", offset=start)
            return _UINT32.unpack(self.read(4, what))[0]
        tok = self.read_token(what)
        try:
            value = int(tok)
        except ValueError:
            raise self.error(f"expected unsigned integer ({what}), got {tok!r}",
                             offset=start) from None
        if not 0 <= value < 2 ** 32:
            raise self.error(f"value {value} out of range for uint32 ({what})", offset=start)
        return value

    def read_float(self, binary: bool, what: str = "float") -> float:
        """A float or double value (Kaldi accepts either size on read)."""
        if binary:
            start = self.offset
            size = self.read(1, what)[0]
            if size == 4:
                return _FLOAT.unpack(self.read(4, what))[0]
            if size == 8:
                return _DOUBLE.unpack(self.read(8, what))[0]
            raise self.error(f"expected float ({what}) with size byte 4 or 8, got {size}",
                             offset=start)
        start = self.offset
        tok = self.read_token(what)
        try:
            return parse_float(tok)
        except ValueError:
            raise self.error(f"expected number ({what}), got {tok!r}", offset=start) from None

    def read_bool(self, binary: bool, what: str = "bool") -> bool:
        start = self.offset
        if binary:
            c = self.read(1, what)
        else:
            self.skip_whitespace()
            c = self.read(1, what)
        if c == b"T":
            return True
        if c == b"F":
            return False
        raise self.error(f"expected bool T or F ({what}), got {c!r}", offset=start)

    def _read_number_token(self) -> Tuple[int, str]:
        """(offset, text) of the characters up to whitespace, ``]`` or EOF."""
        start = self.offset
        chars = []
        while True:
            c = self.peek(1)
            if not c or c in _WHITESPACE or c == b"]":
                break
            chars.append(self.read(1))
        return start, b"".join(chars).decode("ascii", "replace")

    def read_int32_vector_raw(self, binary: bool, what: str = "integer vector") -> np.ndarray:
        """Kaldi ``ReadIntegerVector<int32>``: binary size byte + int32 count +
        raw values; text ``[ a b c ]`` (as Kaldi: ``[1 2]`` is accepted too,
        values must be in int32 range)."""
        start = self.offset
        if binary:
            size = self.read(1, what)[0]
            if size != 4:
                raise self.error(f"expected int32 vector ({what}) with element size 4, got {size}",
                                 offset=start)
            n = _INT32.unpack(self.read(4, what))[0]
            if n < 0:
                raise self.error(f"negative length {n} for {what}", offset=start)
            return self.read_array(n, np.int32, what)
        self.skip_whitespace()
        if self.peek(1) != b"[":
            raise self.error(f"expected '[' at the start of {what}, got {self.peek(1)!r}")
        self.read(1)
        values = []
        while True:
            self.skip_whitespace()
            c = self.peek(1)
            if c == b"]":
                self.read(1)
                break
            if not c:
                raise self.error(f"unexpected end of file in {what}")
            tok_start, tok = self._read_number_token()
            try:
                values.append(int(tok))
            except ValueError:
                raise self.error(f"expected integer in {what}, got {tok!r}",
                                 offset=tok_start) from None
            if not -2 ** 31 <= values[-1] < 2 ** 31:
                raise self.error(f"value {values[-1]} out of int32 range in {what}",
                                 offset=tok_start)
        return np.asarray(values, dtype=np.int32)

    def read_text_float_vector(self, what: str = "vector") -> np.ndarray:
        """The text form of Kaldi ``Vector<float>::Read`` (``[]`` or ``[ v v ]``
        on one line; a newline inside is an error; one newline after ``]`` is
        consumed). Returns a float32 array."""
        self.skip_whitespace()
        start = self.offset
        tok = self.read_token(what)
        if tok == "[]":
            return np.zeros(0, np.float32)
        if tok != "[":
            raise self.error(f"expected '[' at the start of {what}, got {tok!r}", offset=start)
        values = []
        while True:
            # skip spaces and tabs, but not newlines (as Kaldi)
            while self.peek(1) in (b" ", b"\t"):
                self.read(1)
            c = self.peek(1)
            if not c:
                raise self.error(f"unexpected end of file in {what}")
            if c == b"]":
                self.read(1)
                nxt = self.peek(1)
                if nxt == b"\r":
                    self.read(min(2, len(self.peek(2))))
                elif nxt == b"\n":
                    self.read(1)
                break
            if c in (b"\n", b"\r"):
                raise self.error(f"newline found while reading {what}")
            tok_start, tok = self._read_number_token()
            try:
                values.append(parse_float(tok))
            except ValueError:
                raise self.error(f"expected number in {what}, got {tok!r}",
                                 offset=tok_start) from None
        return np.asarray(values, dtype=np.float32)


def parse_float(tok: str) -> float:
    """Parse a float as C++ streams written by Kaldi (inf, -inf, nan, Infinity)."""
    low = tok.lower()
    if low in ("inf", "+inf", "infinity", "+infinity"):
        return float("inf")
    if low in ("-inf", "-infinity"):
        return float("-inf")
    if low in ("nan", "-nan", "+nan"):
        return float("nan")
    return float(tok)


def format_float(x: float, digits: int = 7) -> str:
    """Format as C++ ``ostream << x`` with ``digits`` significant digits."""
    if x != x:
        return "nan"
    if x == float("inf"):
        return "inf"
    if x == float("-inf"):
        return "-inf"
    return f"{x:.{digits}g}"


# -- writing -------------------------------------------------------------------

def write_binary_marker(f: BinaryIO, binary: bool) -> None:
    if binary:
        f.write(b"\0B")


def write_token(f: BinaryIO, token: str, binary: bool = True) -> None:
    f.write(token.encode("ascii") + b" ")


def _write_basic(f: BinaryIO, binary: bool, size: bytes, packer: struct.Struct, value,
                 text: str) -> None:
    """Kaldi ``WriteBasicType``: size byte + little-endian value, or ``text`` + space."""
    f.write(size + packer.pack(value) if binary else f"{text} ".encode())


def write_int32(f: BinaryIO, value: int, binary: bool = True) -> None:
    value = int(value)
    _write_basic(f, binary, b"\x04", _INT32, value, str(value))


def write_uint32(f: BinaryIO, value: int, binary: bool = True) -> None:
    """Kaldi ``WriteBasicType<uint32>`` (size byte 0xfc = -4 in binary)."""
    value = int(value)
    _write_basic(f, binary, b"\xfc", _UINT32, value, str(value))


def write_float(f: BinaryIO, value: float, binary: bool = True) -> None:
    _write_basic(f, binary, b"\x04", _FLOAT, float(value),
                 "" if binary else format_float(float(np.float32(value))))


def write_double(f: BinaryIO, value: float, binary: bool = True) -> None:
    _write_basic(f, binary, b"\x08", _DOUBLE, float(value),
                 "" if binary else format_float(float(value), 17))


def write_bool(f: BinaryIO, value: bool, binary: bool = True) -> None:
    f.write(b"T" if value else b"F")
    if not binary:
        f.write(b" ")


def write_int32_vector_raw(f: BinaryIO, values, binary: bool = True) -> None:
    """Kaldi ``WriteIntegerVector<int32>`` (text: ``[ 1 2 3 ]`` + newline)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype="<i4"))
    if binary:
        f.write(b"\x04" + _INT32.pack(arr.size))
        f.write(arr.tobytes())
    else:
        f.write(b"[ " + b"".join(f"{int(v)} ".encode() for v in arr) + b"]\n")


# -- whole objects -------------------------------------------------------------------

_T = TypeVar("_T", bound="KaldiObject")


class KaldiObject:
    """Mixin for a class with Kaldi's ``read(inp, binary)`` classmethod and
    ``write(f, binary)`` method: whole files and byte strings, binary ones
    starting with the ``\\0B`` marker (Kaldi ``ReadKaldiObject`` /
    ``WriteKaldiObject``)."""

    @classmethod
    def from_file(cls: Type[_T], path) -> _T:
        path = str(path)
        with open(path, "rb") as fh:
            inp = KaldiInput(fh, path)
            return cls.read(inp, inp.read_binary_marker())

    @classmethod
    def from_bytes(cls: Type[_T], data: bytes, name: str = "<bytes>") -> _T:
        inp = KaldiInput(io.BytesIO(data), name)
        return cls.read(inp, inp.read_binary_marker())

    def to_file(self, path, binary: bool = True) -> None:
        Path(path).write_bytes(self.to_bytes(binary))

    def to_bytes(self, binary: bool = True) -> bytes:
        buf = io.BytesIO()
        write_binary_marker(buf, binary)
        self.write(buf, binary)
        return buf.getvalue()
