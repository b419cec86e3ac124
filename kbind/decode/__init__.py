"""Decoding: graphs (G, HCLG), the lattice-generating beam search over HCLG,
lattice operations and scoring."""

from .decoder import DecodeFailure, DecodeResult, DecoderOptions, LatticeDecoder, write_lattices
from .graph import (arpa_to_g, compose_hclg, digit_loop_g, estimate_arpa, make_hclg,
                    write_graph_dir)
from .lattice_ops import (determinize_lattice, determinize_lattice_pruned,
                          lattice_forward_backward, prune_lattice)
from .scoring import compute_wer, score_decode_dir, score_lattices

__all__ = [
    "DecodeFailure", "DecodeResult", "DecoderOptions", "LatticeDecoder", "write_lattices",
    "arpa_to_g", "compose_hclg", "digit_loop_g", "estimate_arpa", "make_hclg",
    "write_graph_dir", "determinize_lattice", "determinize_lattice_pruned",
    "lattice_forward_backward", "prune_lattice", "compute_wer", "score_decode_dir",
    "score_lattices",
]
