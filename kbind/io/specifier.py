"""Kaldi's rspecifiers, wspecifiers, rxfilenames and wxfilenames.

* rxfilename (input file name): ``-`` or empty = stdin; ``cmd |`` = the
  output of a shell pipe; ``path:1234`` = a file opened at byte offset 1234
  (what scp files hold); anything else is a file.
* wxfilename: ``-`` = stdout; ``| cmd`` = a shell pipe fed with our output;
  anything else is a file.
* rspecifier: ``ark[,opts]:rxfilename`` or ``scp[,opts]:rxfilename`` with
  options ``o`` (once), ``s`` (sorted), ``cs`` (called in sorted order),
  ``p`` (permissive: a bad or missing entry counts as absent), ``b``/``t``
  (ignored on read, as in Kaldi), ``bg`` (background read-ahead), and the
  ``n``-prefixed negations.
* wspecifier: ``ark[,opts]:wxfilename``, ``scp[,opts]:wxfilename`` or
  ``ark,scp[,opts]:ark_wxfilename,scp_wxfilename`` with options ``b``
  (binary, the default), ``t`` (text), ``f``/``nf`` (flush after each entry
  or not) and ``p`` (permissive).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Optional, Tuple

from .errors import KaldiFormatError, KaldiIOError

__all__ = ["RSpecifier", "WSpecifier", "parse_rspecifier", "parse_wspecifier",
           "open_rxfilename", "open_wxfilename", "split_offset"]

_READ_OPTS = {"o", "no", "s", "ns", "cs", "ncs", "p", "np", "b", "t", "bg"}
_WRITE_OPTS = {"b", "t", "f", "nf", "p"}
_OFFSET_RE = re.compile(r"^(.*):(\d+)$")
_RANGE_RE = re.compile(r"^(.*?)\[([0-9:,\s]*)\]$")


@dataclass
class RSpecifier:
    kind: str                      # "ark" or "scp"
    rxfilename: str
    once: bool = False
    sorted: bool = False
    called_sorted: bool = False
    permissive: bool = False
    background: bool = False


@dataclass
class WSpecifier:
    ark_wxfilename: Optional[str]
    scp_wxfilename: Optional[str]
    binary: bool = True
    flush: Optional[bool] = None
    permissive: bool = False
    opts: set = field(default_factory=set)


def parse_rspecifier(spec: str) -> RSpecifier:
    """Parse a Kaldi rspecifier; raises ValueError with the reason."""
    m = re.match(r"^([a-z]+(?:,[a-z]+)*):(.*)$", spec, re.S)
    if not m:
        raise ValueError(f"invalid rspecifier {spec!r}: expected ark:... or scp:...")
    words = m.group(1).split(",")
    kinds = [w for w in words if w in ("ark", "scp")]
    opts = [w for w in words if w not in ("ark", "scp")]
    if len(kinds) != 1:
        raise ValueError(f"invalid rspecifier {spec!r}: exactly one of ark or scp required")
    bad = [o for o in opts if o not in _READ_OPTS]
    if bad:
        raise ValueError(f"invalid rspecifier {spec!r}: unknown option(s) {','.join(bad)}")
    o = set(opts)
    return RSpecifier(kind=kinds[0], rxfilename=m.group(2), once="o" in o,
                      sorted="s" in o, called_sorted="cs" in o, permissive="p" in o,
                      background="bg" in o)


def parse_wspecifier(spec: str) -> WSpecifier:
    """Parse a Kaldi wspecifier; raises ValueError with the reason."""
    m = re.match(r"^([a-z]+(?:,[a-z]+)*):(.*)$", spec, re.S)
    if not m:
        raise ValueError(f"invalid wspecifier {spec!r}: expected ark:..., scp:... "
                         "or ark,scp:...")
    words = m.group(1).split(",")
    kinds = [w for w in words if w in ("ark", "scp")]
    opts = {w for w in words if w not in ("ark", "scp")}
    bad = opts - _WRITE_OPTS
    if bad:
        raise ValueError(f"invalid wspecifier {spec!r}: unknown option(s) {','.join(sorted(bad))}")
    if "b" in opts and "t" in opts:
        raise ValueError(f"invalid wspecifier {spec!r}: both b and t given")
    rest = m.group(2)
    binary = "t" not in opts
    flush = True if "f" in opts else (False if "nf" in opts else None)
    if kinds == ["ark"]:
        return WSpecifier(rest, None, binary, flush, "p" in opts, opts)
    if kinds == ["scp"]:
        return WSpecifier(None, rest, binary, flush, "p" in opts, opts)
    if kinds == ["ark", "scp"]:
        parts = rest.split(",")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"invalid wspecifier {spec!r}: ark,scp: needs "
                             "ark_wxfilename,scp_wxfilename")
        return WSpecifier(parts[0], parts[1], binary, flush, "p" in opts, opts)
    raise ValueError(f"invalid wspecifier {spec!r}: expected ark, scp or ark,scp "
                     "(in that order)")


def split_offset(rxfilename: str) -> Tuple[str, Optional[int], Optional[str]]:
    """Split ``path:offset[range]`` into (path, offset or None, range or None)."""
    rng = None
    m = _RANGE_RE.match(rxfilename)
    if m and not rxfilename.rstrip().endswith("|"):
        rxfilename, rng = m.group(1), m.group(2)
    m = _OFFSET_RE.match(rxfilename)
    if m and not rxfilename.rstrip().endswith("|"):
        return m.group(1), int(m.group(2)), rng
    return rxfilename, None, rng


class _PipeReader(io.RawIOBase):
    """The stdout of a shell command; closing checks its exit status."""

    def __init__(self, command: str):
        self.command = command
        self.proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)

    def readable(self):
        return True

    def readinto(self, b):
        return self.proc.stdout.readinto(b)

    def check(self) -> None:
        """Raise KaldiIOError if the command failed (waits for it)."""
        rc = self.proc.wait()
        if rc != 0:
            err = self.proc.stderr.read().decode("utf-8", "replace").strip()
            raise KaldiIOError(f"command '{self.command}' failed with exit status {rc}"
                               + (f": {err[-2000:]}" if err else ""), self.command)

    def close(self):
        if not self.closed:
            try:
                self.proc.stdout.close()
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait()
                self.proc.stderr.close()
        super().close()


class PipeInput(io.BufferedReader):
    """Buffered reader over a pipe; ``check()`` raises if the command failed."""

    def __init__(self, command: str):
        self._pipe = _PipeReader(command)
        super().__init__(self._pipe, buffer_size=1 << 16)
        self.command = command

    def check(self) -> None:
        self._pipe.check()


def open_rxfilename(rxfilename: str) -> Tuple[BinaryIO, str, int]:
    """Open an rxfilename for binary reading.

    Returns (file object, display name, starting offset). Pipes return a
    :class:`PipeInput` whose ``check()`` reports a failed command.
    """
    name = rxfilename.strip() if rxfilename.strip().endswith("|") else rxfilename
    if name in ("", "-"):
        return sys.stdin.buffer, "standard input", 0
    if name.endswith("|"):
        command = name[:-1].strip()
        return PipeInput(command), f"'{command} |'", 0
    path, offset, _ = split_offset(name)
    try:
        f = open(path, "rb", buffering=1 << 16)
    except OSError as e:
        raise KaldiIOError(f"cannot open {path} for reading: {e.strerror}", path) from None
    if offset:
        size = os.fstat(f.fileno()).st_size
        if offset > size:
            f.close()
            raise KaldiFormatError(f"offset {offset} is past the end of the file "
                                   f"({size} bytes)", filename=path, offset=offset)
        f.seek(offset)
    return f, path, offset or 0


class _PipeWriter(io.BufferedWriter):
    def __init__(self, command: str):
        self.command = command
        self.proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE)
        super().__init__(self.proc.stdin, buffer_size=1 << 16)

    def close(self):
        if self.closed:
            return
        try:
            super().close()
        finally:
            rc = self.proc.wait()
        if rc != 0:
            raise KaldiIOError(f"command '{self.command}' failed with exit status {rc}",
                               self.command)


def open_wxfilename(wxfilename: str) -> Tuple[BinaryIO, str]:
    """Open a wxfilename for binary writing; returns (file object, name)."""
    name = wxfilename.strip() if wxfilename.strip().startswith("|") else wxfilename
    if name in ("", "-"):
        return _StdoutProxy(), "standard output"
    if name.startswith("|"):
        command = name[1:].strip()
        return _PipeWriter(command), f"'| {command}'"
    try:
        return open(name, "wb"), name
    except OSError as e:
        raise KaldiIOError(f"cannot open {name} for writing: {e.strerror}", name) from None


class _StdoutProxy(io.RawIOBase):
    """sys.stdout.buffer that is flushed, not closed, when we are done."""

    def writable(self):
        return True

    def write(self, b):
        return sys.stdout.buffer.write(b)

    def tell(self):
        try:
            return sys.stdout.buffer.tell()
        except (OSError, ValueError):
            raise OSError("stdout is not seekable") from None

    def flush(self):
        sys.stdout.buffer.flush()

    def close(self):
        self.flush()
        super().close()
