"""Exceptions raised by the Kaldi readers and writers.

Every error that comes from bad input names the file (or pipe), the table key
being read when it happened (if any) and the byte offset or line, so that a
user can find the problem with ``dd``/``head`` without guessing.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["KaldiFormatError", "KaldiIOError"]


class KaldiIOError(OSError):
    """A file or pipe could not be opened, read or written (I/O, not format)."""

    def __init__(self, message: str, filename: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.filename = filename

    def __str__(self) -> str:
        return self.message


class KaldiFormatError(ValueError):
    """Malformed Kaldi data.

    Attributes
    ----------
    filename: the file, pipe command or ``-`` that was being read.
    key: the table key whose object was being read (None outside tables).
    offset: the byte offset in the stream where the bad object starts or
        where the reader noticed the problem (None if unknown).
    line: the 1-based line number for line-oriented text files (scp, data
        dir files), else None.
    """

    def __init__(self, message: str, filename: Optional[str] = None,
                 key: Optional[str] = None, offset: Optional[int] = None,
                 line: Optional[int] = None):
        self.reason = message
        self.filename = filename
        self.key = key
        self.offset = offset
        self.line = line
        where = []
        if filename is not None:
            where.append(str(filename))
        if key is not None:
            where.append(f"key '{key}'")
        if line is not None:
            where.append(f"line {line}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
