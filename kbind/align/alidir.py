"""Kaldi alignment files: writing ``ali.*.gz`` archives and loading a Kaldi
alignment directory (``exp/tri3_ali``: ``final.mdl``, ``tree``,
``ali.{1..N}.gz``, ``num_jobs``).

Alignments are int32 vectors of transition-ids in Kaldi's Int32Vector
archive format (:mod:`kbind.io`), so Kaldi's ``ali-to-phones`` and
``ali-to-pdf`` read what :func:`write_alignments` writes; the conversions
are :func:`kbind.hmm.alignment.ali_to_pdf` / ``ali_to_phones``.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from ..hmm.alignment import ali_to_pdf, ali_to_phones
from ..hmm.transition_model import TransitionModel
from ..hmm.tree import ContextDependency
from ..io import KaldiFormatError, KaldiIOError, read_table, write_table

__all__ = ["write_alignments", "read_alignments", "AlignmentDir"]

log = logging.getLogger("kbind.align")


def write_alignments(wspecifier: str, results) -> int:
    """Write alignments as a Kaldi int32-vector table (e.g.
    ``"ark:|gzip -c > ali.1.gz"`` or ``"ark,t:ali.txt"``).

    ``results``: :class:`~kbind.align.aligner.AlignResult` objects, ``(key,
    alignment)`` pairs or a ``{key: alignment}`` dict; failed results
    (``alignment is None``) are skipped. Returns the number written."""
    if isinstance(results, dict):
        results = results.items()
    n = 0
    with write_table(wspecifier, kind="int32_vector") as w:
        for r in results:
            key, ali = (r.key, r.alignment) if hasattr(r, "alignment") else r
            if ali is None:
                continue
            w.write(key, np.asarray(ali, dtype=np.int32))
            n += 1
    return n


def _rspecifier(path: Union[str, Path]) -> str:
    p = str(path)
    if p.endswith(".gz"):
        return f"ark:gunzip -c {shlex.quote(p)} |"
    return f"ark:{p}"


def read_alignments(path_or_rspecifier: Union[str, Path]) -> Iterator[Tuple[str, np.ndarray]]:
    """(key, int32 transition-ids) from an archive: an rspecifier, or a file
    path (``.gz`` read through gunzip)."""
    s = str(path_or_rspecifier)
    spec = s if s.startswith(("ark:", "ark,", "scp:", "scp,")) else _rspecifier(s)
    for key, ali in read_table(spec, kind="int32_vector"):
        yield key, np.asarray(ali, dtype=np.int32)


class AlignmentDir:
    """A Kaldi alignment directory, loaded with :meth:`load`.

    Attributes: ``dir``; ``trans_model`` (the :class:`TransitionModel` at
    the start of ``final.mdl``; the acoustic model after it -- GMM or nnet
    -- is not read); ``tree``; ``num_jobs``; ``alignments`` (dict key ->
    int32 transition-ids, from ``ali.1.gz`` .. ``ali.<num_jobs>.gz``).
    """

    def __init__(self, dir, trans_model: TransitionModel, tree: Optional[ContextDependency],
                 alignments: Dict[str, np.ndarray], num_jobs: int):
        self.dir = Path(dir)
        self.trans_model = trans_model
        self.tree = tree
        self.alignments = alignments
        self.num_jobs = num_jobs

    @classmethod
    def load(cls, path, check: bool = True) -> "AlignmentDir":
        """Read ``final.mdl`` (transition model only), ``tree``, ``num_jobs``
        (if absent: the ``ali.*.gz`` present, which must be 1..N) and every
        ``ali.N.gz``. Errors name the file (and key). With ``check``, every
        transition-id must be in the model's range and keys must not repeat
        across jobs."""
        d = Path(path)
        if not d.is_dir():
            raise FileNotFoundError(f"alignment dir {d} does not exist")
        mdl = d / "final.mdl"
        if not mdl.exists():
            raise FileNotFoundError(f"{mdl} not found (an alignment dir needs final.mdl)")
        try:
            tm = TransitionModel.from_file(str(mdl))
        except (KaldiFormatError, ValueError) as e:
            raise KaldiFormatError(f"{mdl}: cannot read the transition model at its start: "
                                   f"{e}") from None
        tree = None
        if (d / "tree").exists():
            tree = ContextDependency.from_file(str(d / "tree"))
            if tree.num_pdfs != tm.num_pdfs:
                raise ValueError(f"{d / 'tree'} has {tree.num_pdfs} pdfs but {mdl}'s "
                                 f"transition model has {tm.num_pdfs}")
        files = cls._ali_files(d)
        alignments: Dict[str, np.ndarray] = {}
        where: Dict[str, Path] = {}
        for f in files:
            try:
                for key, ali in read_alignments(f):
                    if check:
                        if key in alignments:
                            raise ValueError(f"{f}: key {key} is also in {where[key]}")
                        bad = np.nonzero((ali < 1) | (ali > tm.num_transition_ids))[0]
                        if bad.size:
                            i = int(bad[0])
                            raise ValueError(
                                f"{f}: key {key}, frame {i}: transition-id {int(ali[i])} out "
                                f"of range [1, {tm.num_transition_ids}] of {mdl}")
                    alignments[key] = ali
                    where[key] = f
            except KaldiIOError as e:
                raise KaldiIOError(f"{f}: {e}", str(f)) from None
        return cls(d, tm, tree, alignments, len(files))

    @staticmethod
    def _ali_files(d: Path) -> List[Path]:
        nj_file = d / "num_jobs"
        if nj_file.exists():
            txt = nj_file.read_text().split()
            try:
                nj = int(txt[0])
                if nj < 1 or len(txt) != 1:
                    raise ValueError
            except (IndexError, ValueError):
                raise ValueError(f"{nj_file}: expected one positive integer, got "
                                 f"{' '.join(txt)[:40]!r}") from None
            files = [d / f"ali.{j}.gz" for j in range(1, nj + 1)]
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise FileNotFoundError(f"{nj_file} says {nj} jobs but "
                                        f"{', '.join(missing[:3])} "
                                        f"{'is' if len(missing) == 1 else 'are'} missing")
            return files
        found = {}
        for f in d.glob("ali.*.gz"):
            mid = f.name[len("ali."):-len(".gz")]
            if mid.isdigit():
                found[int(mid)] = f
        if not found:
            raise FileNotFoundError(f"no ali.*.gz files in {d}")
        if sorted(found) != list(range(1, len(found) + 1)):
            raise ValueError(f"{d}: ali.N.gz files are not numbered 1..N ({sorted(found)}) "
                             "and there is no num_jobs file")
        return [found[j] for j in range(1, len(found) + 1)]

    def __len__(self) -> int:
        return len(self.alignments)

    def keys(self) -> List[str]:
        return list(self.alignments)

    def pdf_alignments(self) -> Dict[str, np.ndarray]:
        """key -> 0-based pdf-id per frame (Kaldi ``ali-to-pdf``)."""
        return {k: ali_to_pdf(self.trans_model, a) for k, a in self.alignments.items()}

    def phone_alignments(self, per_frame: bool = True, write_lengths: bool = False
                         ) -> Dict[str, Union[np.ndarray, list]]:
        """key -> phones (Kaldi ``ali-to-phones``): per frame by default,
        the phone sequence with ``per_frame=False``, (phone, length) pairs
        with ``write_lengths=True``. An inconsistent alignment raises
        ValueError naming its key."""
        out = {}
        for k, a in self.alignments.items():
            try:
                out[k] = ali_to_phones(self.trans_model, a,
                                       per_frame=per_frame and not write_lengths,
                                       write_lengths=write_lengths)
            except ValueError as e:
                raise ValueError(f"{self.dir}: alignment of {k}: {e}") from None
        return out

    def write(self, out_dir, num_jobs: Optional[int] = None, model_bytes: bytes = b"") -> None:
        """Write an alignment dir (``final.mdl`` = transition model +
        ``model_bytes``, ``tree``, ``num_jobs``, ``ali.N.gz`` with the keys
        split into contiguous blocks)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "final.mdl").write_bytes(self.trans_model.to_bytes(True) + model_bytes)
        if self.tree is not None:
            self.tree.to_file(str(out / "tree"))
        nj = num_jobs or self.num_jobs or 1
        keys = self.keys()
        for j, block in enumerate(np.array_split(np.arange(len(keys)), nj), start=1):
            write_alignments(f"ark:| gzip -c > {shlex.quote(str(out / f'ali.{j}.gz'))}",
                             ((keys[i], self.alignments[keys[i]]) for i in block))
        (out / "num_jobs").write_text(f"{nj}\n")
