"""Decoding: lattice-generating beam search over HCLG and lattice operations."""

from .decoder import DecodeFailure, DecodeResult, DecoderOptions, LatticeDecoder, write_lattices
from .lattice_ops import (determinize_lattice, determinize_lattice_pruned, prune_lattice,
                          lattice_forward_backward)
from .graph import arpa_to_g, compose_hclg, digit_loop_g, estimate_arpa, make_hclg, write_graph_dir
