"""Forced alignment with the current model, and Kaldi alignment files.

* :class:`ForcedAligner` (``compile`` = ``compile-train-graphs``; ``align``
  / ``align_many`` = ``align-compiled-mapped`` / ``nnet3-align-compiled``
  with beam, retry beam, careful mode and transition / self-loop / acoustic
  scales; the Viterbi search is C, ``cbridge/align.c``), :class:`AlignOptions`,
  :class:`AlignResult`, :class:`AlignGraph` (``kbind.align.aligner``);
* :func:`write_alignments` (Kaldi ``ali.*.gz`` archives),
  :func:`read_alignments`, :class:`AlignmentDir` (a Kaldi alignment dir:
  ``final.mdl``, ``tree``, ``ali.*.gz``, ``num_jobs``) (``kbind.align.alidir``).
"""

from .aligner import (AlignGraph, AlignOptions, AlignResult, ForcedAligner,
                      MonophoneGraphCompiler, add_transition_probs, careful_graph,
                      min_frames_needed, scaled_transition_costs)
from .alidir import AlignmentDir, read_alignments, write_alignments

__all__ = ["AlignOptions", "AlignResult", "AlignGraph", "ForcedAligner", "write_alignments",
           "read_alignments", "AlignmentDir", "add_transition_probs", "careful_graph",
           "min_frames_needed", "scaled_transition_costs", "MonophoneGraphCompiler"]
