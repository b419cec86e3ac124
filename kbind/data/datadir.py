"""Kaldi data directories (``data/train`` etc.).

A data dir is a set of line-oriented text files, each line ``KEY VALUE...``
where the key is everything up to the first space or tab:

=========================  =================================================
``wav.scp``                recording (or utterance) -> rxfilename: a path,
                           ``command |`` or ``ark:offset``
``segments``               utt -> recording start end [channel] (seconds)
``text``                   utt -> transcript (may be empty only if invalid)
``utt2spk`` / ``spk2utt``  utt -> speaker / speaker -> utts
``feats.scp``              utt -> feature matrix rxfilename
``cmvn.scp``               speaker -> CMVN stats rxfilename
``utt2dur`` / ``reco2dur`` durations in seconds
``utt2num_frames``         number of feature frames
``spk2gender``             speaker -> ``m`` or ``f``
``reco2file_and_channel``  recording -> file channel (``A``/``B``)
=========================  =================================================

Every file must be sorted on the key in C-locale byte order (``export
LC_ALL=C; sort``) without duplicates; :func:`validate_data_dir` checks this
and the cross-file consistency that Kaldi's ``utils/validate_data_dir.sh``
checks, reporting file and line for each problem.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from kbind.io.errors import KaldiFormatError

__all__ = [
    "Segment",
    "DataDir",
    "DataDirError",
    "ValidationIssue",
    "ValidationResult",
    "validate_data_dir",
    "utt2spk_to_spk2utt",
    "spk2utt_to_utt2spk",
    "kaldi_sorted",
    "read_data_file",
]

PathLike = Union[str, os.PathLike]
_WS = re.compile(r"[ \t]+")


def _ckey(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def kaldi_sorted(keys: Iterable[str]) -> List[str]:
    """Sort as ``LC_ALL=C sort`` (byte order of the UTF-8 encoding)."""
    return sorted(keys, key=_ckey)


def _sorted_dict(d: Mapping) -> dict:
    return {k: d[k] for k in kaldi_sorted(d)}


@dataclass
class Segment:
    """One line of ``segments``: times in seconds, ``end == -1`` = to the end;
    ``channel`` is 0-based as in extract-segments (``None`` = unspecified)."""

    recording: str
    start: float
    end: float
    channel: Optional[int] = None

    @property
    def duration(self) -> float:
        return self.end - self.start


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    """Speakers in C order, each with its utterances in the order of
    ``utt2spk`` (as ``utils/utt2spk_to_spk2utt.pl`` on a sorted utt2spk)."""
    out: Dict[str, List[str]] = {}
    for utt in kaldi_sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return _sorted_dict(out)


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Iterable[str]]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for u in utts:
            if u in out and out[u] != spk:
                raise ValueError(f"utterance '{u}' belongs to speakers '{out[u]}' and '{spk}'")
            out[u] = spk
    return _sorted_dict(out)


# ---------------------------------------------------------------------------
# line reading

@dataclass
class _Line:
    lineno: int
    key: str
    rest: str       # everything after the key and its following whitespace
    fields: List[str]


def _split_lines(path: Path) -> Tuple[List[Tuple[int, str]], List["ValidationIssue"]]:
    """Decode a file into (lineno, text) and collect format problems."""
    issues: List[ValidationIssue] = []
    raw = path.read_bytes()
    name = str(path)
    if raw and not raw.endswith(b"\n"):
        issues.append(ValidationIssue(name, raw.count(b"\n") + 1,
                                      "file has invalid newline (last line does not end with '\\n')"))
    parts = raw.split(b"\n")
    if parts and parts[-1] == b"":
        parts = parts[:-1]
    lines = []
    for i, b in enumerate(parts, 1):
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError as exc:
            issues.append(ValidationIssue(name, i, f"invalid UTF-8 ({exc.reason} at column {exc.start + 1})"))
            text = b.decode("utf-8", "replace")
        if "\r" in text:
            issues.append(ValidationIssue(name, i, "carriage return ('\\r') in line (DOS line endings?)"))
            text = text.replace("\r", "")
        lines.append((i, text))
    return lines, issues


def _parse_lines(path: Path) -> Tuple[List[_Line], List["ValidationIssue"]]:
    lines, issues = _split_lines(path)
    name = str(path)
    out = []
    for i, text in lines:
        if text.strip() == "":
            issues.append(ValidationIssue(name, i, "empty line"))
            continue
        if text[0] in " \t":
            issues.append(ValidationIssue(name, i, "line starts with whitespace (empty key)"))
            text = text.lstrip(" \t")
        # Kaldi splits on ASCII space and tab only
        fields_ = [f for f in _WS.split(text) if f]
        key = fields_[0]
        bad = [c for c in key if c.isspace() or not c.isprintable()]
        if bad:
            issues.append(ValidationIssue(
                name, i, f"key '{key}' contains whitespace or non-printable "
                         f"character U+{ord(bad[0]):04X}"))
        m = _WS.search(text)
        rest = text[m.end():].strip(" \t") if m else ""
        out.append(_Line(i, key, rest, fields_))
    return out, issues


def read_data_file(path: PathLike) -> List[Tuple[int, str, str]]:
    """(line number, key, rest of line) for each line; raises
    :class:`KaldiFormatError` on empty lines, bad encoding, etc."""
    lines, issues = _parse_lines(Path(path))
    fatal = [i for i in issues if "invalid newline" not in i.message]
    if fatal:
        raise KaldiFormatError(fatal[0].message, filename=fatal[0].filename, line=fatal[0].line)
    return [(l.lineno, l.key, l.rest) for l in lines]


def _fmt_float(x: float) -> str:
    s = format(float(x), ".15g")
    if float(s) != float(x):
        s = repr(float(x))
    return s


# per-file parsers: (line) -> value, raising ValueError with a reason
def _p_str(l: _Line):
    if not l.rest:
        raise ValueError("missing value")
    return l.rest


def _p_text(l: _Line):
    return " ".join(l.fields[1:])


def _p_one(l: _Line):
    if len(l.fields) != 2:
        raise ValueError(f"expected 2 fields, got {len(l.fields)}")
    return l.fields[1]


def _p_list(l: _Line):
    if len(l.fields) < 2:
        raise ValueError("expected at least one value after the key")
    return l.fields[1:]


def _p_pos_float(l: _Line):
    v = _float(_p_one(l))
    if not v > 0:
        raise ValueError(f"expected a positive number, got '{l.fields[1]}'")
    return v


def _p_nonneg_int(l: _Line):
    s = _p_one(l)
    try:
        v = int(s)
    except ValueError:
        raise ValueError(f"expected an integer, got '{s}'") from None
    if v < 0:
        raise ValueError(f"expected a non-negative integer, got '{s}'")
    return v


def _p_gender(l: _Line):
    g = _p_one(l)
    if g not in ("m", "f"):
        raise ValueError(f"gender must be 'm' or 'f', got '{g}'")
    return g


def _p_r2fc(l: _Line):
    if len(l.fields) != 3:
        raise ValueError(f"expected 3 fields (recording file channel), got {len(l.fields)}")
    return (l.fields[1], l.fields[2])


def _float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"not a number: '{s}'") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: '{s}'")
    return v


def _p_segment(l: _Line):
    f = l.fields
    if len(f) not in (4, 5):
        raise ValueError(f"expected 4 or 5 fields (utt recording start end [channel]), got {len(f)}")
    start, end = _float(f[2]), _float(f[3])
    if start < 0:
        raise ValueError(f"negative start time {f[2]}")
    if end != -1 and end <= start:
        raise ValueError(f"end time {f[3]} <= start time {f[2]}")
    chan = None
    if len(f) == 5:
        try:
            chan = int(f[4])
        except ValueError:
            raise ValueError(f"bad channel '{f[4]}'") from None
        if chan < 0:
            raise ValueError(f"bad channel '{f[4]}'")
    return Segment(f[1], start, end, chan)


_FILES: Dict[str, Tuple[str, Callable]] = {
    # file name -> (attribute, parser)
    "wav.scp": ("wav_scp", _p_str),
    "segments": ("segments", _p_segment),
    "text": ("text", _p_text),
    "utt2spk": ("utt2spk", _p_one),
    "spk2utt": ("spk2utt", _p_list),
    "feats.scp": ("feats_scp", _p_str),
    "cmvn.scp": ("cmvn_scp", _p_str),
    "utt2dur": ("utt2dur", _p_pos_float),
    "reco2dur": ("reco2dur", _p_pos_float),
    "utt2num_frames": ("utt2num_frames", _p_nonneg_int),
    "spk2gender": ("spk2gender", _p_gender),
    "reco2file_and_channel": ("reco2file_and_channel", _p_r2fc),
}


def _load_file(path: Path, parser: Callable) -> dict:
    lines, issues = _parse_lines(path)
    fatal = [i for i in issues if "invalid newline" not in i.message]
    if fatal:
        raise KaldiFormatError(fatal[0].message, filename=fatal[0].filename, line=fatal[0].line)
    out: dict = {}
    first: Dict[str, int] = {}
    for l in lines:
        try:
            value = parser(l)
        except ValueError as exc:
            raise KaldiFormatError(str(exc), filename=str(path), key=l.key, line=l.lineno) from None
        if l.key in out:
            raise KaldiFormatError(f"duplicated key (first at line {first[l.key]})",
                                   filename=str(path), key=l.key, line=l.lineno)
        first[l.key] = l.lineno
        out[l.key] = value
    return _sorted_dict(out)


@dataclass
class DataDir:
    """A Kaldi data directory as plain dictionaries (keys in C sort order).

    ``wav_scp`` is keyed by recording when ``segments`` exists, else by
    utterance.  Missing files give empty dicts.
    """

    path: Optional[Path] = None
    wav_scp: Dict[str, str] = field(default_factory=dict)
    segments: Dict[str, Segment] = field(default_factory=dict)
    text: Dict[str, str] = field(default_factory=dict)
    utt2spk: Dict[str, str] = field(default_factory=dict)
    spk2utt: Dict[str, List[str]] = field(default_factory=dict)
    feats_scp: Dict[str, str] = field(default_factory=dict)
    cmvn_scp: Dict[str, str] = field(default_factory=dict)
    utt2dur: Dict[str, float] = field(default_factory=dict)
    reco2dur: Dict[str, float] = field(default_factory=dict)
    utt2num_frames: Dict[str, int] = field(default_factory=dict)
    spk2gender: Dict[str, str] = field(default_factory=dict)
    reco2file_and_channel: Dict[str, Tuple[str, str]] = field(default_factory=dict)

    # -- loading / writing -------------------------------------------------
    @classmethod
    def load(cls, path: PathLike) -> "DataDir":
        """Read every known file that exists.  Malformed lines raise
        :class:`KaldiFormatError` (file, key, line); order is not checked
        (use :func:`validate_data_dir`).  A missing ``spk2utt`` or
        ``utt2spk`` is derived from the other."""
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"not a data directory: {p}")
        d = cls(path=p)
        for fname, (attr, parser) in _FILES.items():
            f = p / fname
            if f.is_file():
                setattr(d, attr, _load_file(f, parser))
        if d.utt2spk and not d.spk2utt:
            d.spk2utt = utt2spk_to_spk2utt(d.utt2spk)
        elif d.spk2utt and not d.utt2spk:
            d.utt2spk = spk2utt_to_utt2spk(d.spk2utt)
        return d

    def write(self, path: PathLike) -> Path:
        """Write all non-empty files, sorted as Kaldi requires (C order);
        ``spk2utt`` is regenerated from ``utt2spk`` when that exists."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        spk2utt = utt2spk_to_spk2utt(self.utt2spk) if self.utt2spk else self.spk2utt
        fmt: Dict[str, Tuple[dict, Callable]] = {
            "wav.scp": (self.wav_scp, str),
            "segments": (self.segments, lambda s: " ".join(
                [s.recording, _fmt_float(s.start), _fmt_float(s.end)]
                + ([str(s.channel)] if s.channel is not None else []))),
            "text": (self.text, str),
            "utt2spk": (self.utt2spk, str),
            "spk2utt": (spk2utt, lambda us: " ".join(us)),
            "feats.scp": (self.feats_scp, str),
            "cmvn.scp": (self.cmvn_scp, str),
            "utt2dur": (self.utt2dur, _fmt_float),
            "reco2dur": (self.reco2dur, _fmt_float),
            "utt2num_frames": (self.utt2num_frames, str),
            "spk2gender": (self.spk2gender, str),
            "reco2file_and_channel": (self.reco2file_and_channel, lambda v: f"{v[0]} {v[1]}"),
        }
        for fname, (d, f) in fmt.items():
            target = p / fname
            if not d:
                continue
            with open(target, "w", encoding="utf-8", newline="\n") as out:
                for k in kaldi_sorted(d):
                    v = f(d[k])
                    out.write(f"{k} {v}\n" if v != "" else f"{k}\n")
        return p

    # -- views -------------------------------------------------------------
    @property
    def utterances(self) -> List[str]:
        """Utterance ids (from utt2spk, else segments/text/feats/wav.scp)."""
        for d in (self.utt2spk, self.segments, self.text, self.feats_scp):
            if d:
                return list(kaldi_sorted(d))
        return list(kaldi_sorted(self.wav_scp))

    @property
    def speakers(self) -> List[str]:
        return list(kaldi_sorted(self.spk2utt or utt2spk_to_spk2utt(self.utt2spk)))

    @property
    def recordings(self) -> List[str]:
        if self.segments:
            return kaldi_sorted({s.recording for s in self.segments.values()})
        return list(kaldi_sorted(self.wav_scp))

    def __len__(self) -> int:
        return len(self.utterances)

    def copy(self) -> "DataDir":
        kwargs = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        return DataDir(**kwargs)

    # -- subsetting ----------------------------------------------------------
    def subset(self, utt_ids: Iterable[str], strict: bool = True) -> "DataDir":
        """The data dir restricted to ``utt_ids`` (like
        ``utils/subset_data_dir.sh --utt-list`` followed by
        ``fix_data_dir.sh``): speakers, recordings and speaker-level files
        are restricted to what those utterances use.  ``strict``: unknown
        ids raise ``KeyError`` (else they are ignored)."""
        known = set(self.utterances)
        keep = set()
        for u in utt_ids:
            if u not in known:
                if strict:
                    raise KeyError(f"utterance '{u}' is not in data dir {self.path}")
                continue
            keep.add(u)

        def f(d):
            return {k: v for k, v in d.items() if k in keep}

        out = DataDir(path=self.path)  # where the scp files were loaded from
        out.segments = f(self.segments)
        out.text = f(self.text)
        out.utt2spk = f(self.utt2spk)
        out.feats_scp = f(self.feats_scp)
        out.utt2dur = f(self.utt2dur)
        out.utt2num_frames = f(self.utt2num_frames)
        if self.segments:
            recos = {s.recording for s in out.segments.values()}
        else:
            recos = keep
        out.wav_scp = {k: v for k, v in self.wav_scp.items() if k in recos}
        out.reco2dur = {k: v for k, v in self.reco2dur.items() if k in recos}
        out.reco2file_and_channel = {k: v for k, v in self.reco2file_and_channel.items()
                                     if k in recos}
        if out.utt2spk:
            out.spk2utt = utt2spk_to_spk2utt(out.utt2spk)
        else:
            out.spk2utt = {s: [u for u in us if u in keep] for s, us in self.spk2utt.items()}
            out.spk2utt = {s: us for s, us in out.spk2utt.items() if us}
        spks = set(out.spk2utt)
        out.cmvn_scp = {k: v for k, v in self.cmvn_scp.items() if k in spks}
        out.spk2gender = {k: v for k, v in self.spk2gender.items() if k in spks}
        return out

    # -- features (through kbind.io, imported lazily) ------------------------
    def _table(self, attr: str, key: str):
        import kbind.io as kio  # lazy: written by another part of the project
        scp = getattr(self, attr)
        if key not in scp:
            raise KeyError(f"'{key}' not in {attr.replace('_', '.')} of {self.path}")
        cache = self.__dict__.setdefault("_tables", {})
        if attr not in cache:
            if self.path is not None and (self.path / attr.replace("_", ".")).is_file():
                spec = "scp:" + str(self.path / attr.replace("_", "."))
                cache[attr] = kio.RandomAccessTable(spec)
            else:
                cache[attr] = None
        table = cache[attr]
        if table is not None:
            return table[key]
        # in-memory scp (e.g. after subset): read the single rxfilename
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".scp", delete=False) as tmp:
            tmp.write(f"{key} {scp[key]}\n")
        try:
            return kio.RandomAccessTable("scp:" + tmp.name)[key]
        finally:
            os.unlink(tmp.name)

    def load_feats(self, utt: str):
        """Feature matrix of ``utt`` from ``feats.scp`` (numpy array)."""
        return self._table("feats_scp", utt)

    def load_cmvn(self, spk: str):
        """CMVN stats of speaker ``spk`` from ``cmvn.scp`` ((2, dim+1))."""
        return self._table("cmvn_scp", spk)

    def iter_feats(self) -> Iterator[Tuple[str, object]]:
        """(utt, feats) over ``feats.scp`` in file order."""
        import kbind.io as kio
        if self.path is None or not (self.path / "feats.scp").is_file():
            for utt in self.feats_scp:
                yield utt, self.load_feats(utt)
            return
        yield from kio.read_table("scp:" + str(self.path / "feats.scp"))

    def __repr__(self) -> str:
        present = [n for n, (a, _) in _FILES.items() if getattr(self, a)]
        return (f"DataDir(path={str(self.path)!r}, utterances={len(self.utterances)}, "
                f"speakers={len(self.spk2utt)}, files={present})")


# ---------------------------------------------------------------------------
# validation

@dataclass
class ValidationIssue:
    filename: str
    line: Optional[int]
    message: str
    level: str = "error"

    def __str__(self) -> str:
        where = self.filename + (f":{self.line}" if self.line is not None else "")
        return f"{where}: {self.level}: {self.message}"


@dataclass
class ValidationResult:
    path: Path
    errors: List[ValidationIssue] = field(default_factory=list)
    warnings: List[ValidationIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        if self.ok and not self.warnings:
            return f"Successfully validated data-directory {self.path}"
        return "\n".join(str(i) for i in self.errors + self.warnings)


class DataDirError(KaldiFormatError):
    """validate_data_dir found errors; ``issues`` lists all of them."""

    def __init__(self, path, issues: List[ValidationIssue]):
        self.issues = issues
        first = issues[0]
        rest = "".join("\n  " + str(i) for i in issues[1:])
        more = f" ({len(issues)} errors in data dir {path})" if len(issues) > 1 else ""
        super().__init__(first.message + more + rest, filename=first.filename, line=first.line)


_MAX_PER_CHECK = 20


class _Checker:
    def __init__(self, path: Path):
        self.path = path
        self.res = ValidationResult(path)
        self.files: Dict[str, Tuple[List[_Line], Dict[str, int]]] = {}

    def err(self, fname: str, line: Optional[int], msg: str):
        self.res.errors.append(ValidationIssue(str(self.path / fname), line, msg))

    def warn(self, fname: str, line: Optional[int], msg: str):
        self.res.warnings.append(ValidationIssue(str(self.path / fname), line, msg, "warning"))

    def read(self, fname: str) -> Optional[Tuple[List[_Line], Dict[str, int]]]:
        """Parse and check sorted/unique; returns (lines, key -> lineno)."""
        if fname in self.files:
            return self.files[fname]
        f = self.path / fname
        if not f.is_file():
            return None
        lines, issues = _parse_lines(f)
        self.res.errors.extend(issues)
        first: Dict[str, int] = {}
        n_bad = 0
        prev: Optional[_Line] = None
        for l in lines:
            if l.key in first:
                if n_bad < _MAX_PER_CHECK:
                    self.err(fname, l.lineno, f"duplicated key '{l.key}' (first at line "
                                              f"{first[l.key]}); file is not sorted and unique")
                n_bad += 1
            else:
                first[l.key] = l.lineno
            if prev is not None and _ckey(l.key) < _ckey(prev.key):
                if n_bad < _MAX_PER_CHECK:
                    self.err(fname, l.lineno,
                             f"file is not in sorted order: key '{l.key}' comes after "
                             f"'{prev.key}' (line {prev.lineno}); sort it with "
                             f"'LC_ALL=C sort'")
                n_bad += 1
            prev = l
        self.files[fname] = (lines, first)
        return self.files[fname]

    def check_values(self, fname: str, parser: Callable, what: str = "") -> Dict[str, object]:
        r = self.read(fname)
        out: Dict[str, object] = {}
        if r is None:
            return out
        n = 0
        for l in r[0]:
            try:
                out.setdefault(l.key, parser(l))
            except ValueError as exc:
                if n < _MAX_PER_CHECK:
                    self.err(fname, l.lineno, f"{fname} has wrong format{what}: {exc}")
                n += 1
        return out

    def same_keys(self, ref_name: str, ref: Dict[str, int], other_name: str,
                  other: Dict[str, int], kind: str):
        """Keys of ``ref`` (a key -> line map) must equal those of ``other``."""
        missing = [k for k in ref if k not in other]
        extra = [k for k in other if k not in ref]
        for k in missing[:_MAX_PER_CHECK]:
            self.err(ref_name, ref[k], f"{kind} '{k}' is in {ref_name} but not in {other_name}")
        for k in extra[:_MAX_PER_CHECK]:
            self.err(other_name, other[k], f"{kind} '{k}' is in {other_name} but not in {ref_name}")
        return not missing and not extra


def validate_data_dir(path: PathLike, no_feats: bool = False, no_text: bool = False,
                      no_wav: bool = False, raise_on_error: bool = True) -> ValidationResult:
    """Check a data dir as ``utils/validate_data_dir.sh`` does.

    ``no_feats`` / ``no_text`` / ``no_wav``: do not require (or check)
    ``feats.scp`` / ``text`` / ``wav.scp``.  Every issue names the file and
    line.  Raises :class:`DataDirError` if there are errors (unless
    ``raise_on_error`` is false); returns a :class:`ValidationResult` with
    warnings otherwise.
    """
    p = Path(path)
    c = _Checker(p)
    if not p.is_dir():
        c.err("", None, f"no such directory {p}")
        return _finish(c, raise_on_error)

    # utt2spk / spk2utt
    if not (p / "utt2spk").is_file():
        c.err("utt2spk", None, "no such file")
        return _finish(c, raise_on_error)
    if not (p / "spk2utt").is_file():
        c.err("spk2utt", None, "no such file (create it with utils/utt2spk_to_spk2utt.pl)")
        return _finish(c, raise_on_error)
    utt2spk_v = c.check_values("utt2spk", _p_one)
    lines_u, utts = c.read("utt2spk")
    if not lines_u:
        c.err("utt2spk", None, "utt2spk is empty")
    spk2utt_v = c.check_values("spk2utt", _p_list)
    lines_s, spks = c.read("spk2utt")

    expected = utt2spk_to_spk2utt(utt2spk_v)
    n = 0
    for l in lines_s:
        got = spk2utt_v.get(l.key)
        if got is None:
            continue
        if l.key not in expected:
            c.err("spk2utt", l.lineno, f"speaker '{l.key}' is in spk2utt but not in utt2spk; "
                                       f"spk2utt and utt2spk do not seem to match")
            n += 1
        elif list(got) != expected[l.key]:
            c.err("spk2utt", l.lineno, f"utterances of speaker '{l.key}' differ from utt2spk "
                                       f"(expected '{' '.join(expected[l.key])}'); spk2utt "
                                       f"and utt2spk do not seem to match")
            n += 1
        if n >= _MAX_PER_CHECK:
            break
    for spk, us in expected.items():
        if spk not in spks:
            c.err("utt2spk", utts.get(us[0]), f"speaker '{spk}' (of utterance '{us[0]}') "
                                              f"is in utt2spk but not in spk2utt")

    # text
    if not no_text:
        r = c.read("text")
        if r is None:
            c.err("text", None, "no such file (use no_text=True if this is by design)")
        else:
            lines_t, text_keys = r
            c.same_keys("utt2spk", utts, "text", text_keys, "utterance")
            n = 0
            for l in lines_t:
                if len(l.fields) < 2:
                    if n < _MAX_PER_CHECK:
                        c.err("text", l.lineno, f"empty transcript for utterance '{l.key}'")
                    n += 1

    # segments / wav.scp
    seg_v: Dict[str, object] = {}
    r_seg = c.read("segments")
    if r_seg is not None:
        c.check_values("segments", _p_segment)
        c.same_keys("utt2spk", utts, "segments", r_seg[1], "utterance")
        reco_lines: Dict[str, int] = {}
        for l in r_seg[0]:
            if len(l.fields) >= 2:
                reco_lines.setdefault(l.fields[1], l.lineno)
        if not no_wav:
            r_wav = c.read("wav.scp")
            if r_wav is None:
                c.err("wav.scp", None, "no such file (segments exists)")
            else:
                c.check_values("wav.scp", _p_str)
                for reco, ln in list(reco_lines.items()):
                    if reco not in r_wav[1]:
                        c.err("segments", ln, f"recording '{reco}' is not in wav.scp")
                for reco, ln in r_wav[1].items():
                    if reco not in reco_lines:
                        c.err("wav.scp", ln, f"recording '{reco}' is not used by any segment "
                                             f"(recording-ids of segments and wav.scp differ)")
        r_r2f = c.read("reco2file_and_channel")
        if r_r2f is not None:
            c.check_values("reco2file_and_channel", _p_r2fc)
            for l in r_r2f[0]:
                if len(l.fields) == 3 and l.fields[2] not in ("A", "B"):
                    if l.fields[2] == "1":
                        c.warn("reco2file_and_channel", l.lineno,
                               "channel '1' (expected 'A' or 'B'); OK for single-channel data")
                    else:
                        c.err("reco2file_and_channel", l.lineno,
                              f"bad channel '{l.fields[2]}' (expected 'A' or 'B')")
            c.same_keys("segments", reco_lines, "reco2file_and_channel", r_r2f[1], "recording")
        r_rd = c.read("reco2dur")
        if r_rd is not None:
            c.check_values("reco2dur", _p_pos_float)
            c.same_keys("segments", reco_lines, "reco2dur", r_rd[1], "recording")
    elif not no_wav:
        r_wav = c.read("wav.scp")
        if r_wav is not None:
            c.check_values("wav.scp", _p_str)
            c.same_keys("utt2spk", utts, "wav.scp", r_wav[1], "utterance")
            r_rd = c.read("reco2dur")
            if r_rd is not None:
                c.check_values("reco2dur", _p_pos_float)
                c.same_keys("wav.scp", r_wav[1], "reco2dur", r_rd[1], "recording")

    # features
    if not no_feats:
        r = c.read("feats.scp")
        if r is None:
            c.err("feats.scp", None, "no such file (use no_feats=True if this is by design)")
        else:
            c.check_values("feats.scp", _p_str)
            c.same_keys("utt2spk", utts, "feats.scp", r[1], "utterance")
        r = c.read("cmvn.scp")
        if r is not None:
            c.check_values("cmvn.scp", _p_str)
            c.same_keys("spk2utt", spks, "cmvn.scp", r[1], "speaker")

    # speaker / utterance level extras
    r = c.read("spk2gender")
    if r is not None:
        c.check_values("spk2gender", _p_gender)
        c.same_keys("spk2utt", spks, "spk2gender", r[1], "speaker")
    for fname, parser in (("utt2dur", _p_pos_float), ("utt2num_frames", _p_nonneg_int)):
        r = c.read(fname)
        if r is not None:
            c.check_values(fname, parser)
            c.same_keys("utt2spk", utts, fname, r[1], "utterance")
    return _finish(c, raise_on_error)


def _finish(c: _Checker, raise_on_error: bool) -> ValidationResult:
    if c.res.errors and raise_on_error:
        raise DataDirError(c.path, c.res.errors)
    return c.res
