"""Holders: how each kind of object is read and written inside tables.

A holder is Kaldi's name for the class that knows one object type in an
archive. Here a holder is a name, a reader ``read(inp, binary)``, a writer
``write(f, value, binary)``, and whether the object starts with Kaldi's
binary marker ``\\0B`` (every Kaldi object does except FSTs and lattices,
which start with the OpenFst header and decide binary/text from their first
byte, as ``VectorFstTplHolder`` does).

``kind="auto"`` looks at the first bytes of an object: ``FM``/``DM``/``CM*``
give a matrix, ``FV``/``DV`` a vector, the OpenFst magic an FST or lattice
(by its arc type), ``\\0B\\x04`` an int32 vector (an alignment, the most
common integer table; name ``int32_vector_vector``, ``posterior`` or
``int32`` explicitly for the others), text ``[`` followed by a newline a
matrix, ``[`` otherwise a vector, and other text an int32 vector.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Optional

import numpy as np

from . import intvec, matrix
from .stream import KaldiInput

__all__ = ["Holder", "get_holder", "holder_for_value", "detect_holder", "HOLDER_NAMES"]

FST_MAGIC = struct.pack("<i", 2125659606)


@dataclass(frozen=True)
class Holder:
    name: str
    read: Callable[[KaldiInput, Optional[bool]], Any]
    write: Callable[[BinaryIO, Any, bool], None]
    marker: bool = True


def _obj_reader(loader):
    def read(inp, binary):
        return loader().read(inp, binary)
    return read


def _obj_writer(f, value, binary):
    value.write(f, binary)


def _fst_cls():
    from .fst import Fst
    return Fst


def _lattice_cls():
    from .lattice import Lattice
    return Lattice


def _compact_lattice_cls():
    from .lattice import CompactLattice
    return CompactLattice


def _transition_model_cls():
    from ..hmm.transition_model import TransitionModel
    return TransitionModel


def _tree_cls():
    from ..hmm.tree import ContextDependency
    return ContextDependency


def _topology_cls():
    from ..hmm.topology import HmmTopology
    return HmmTopology


_HOLDERS: Dict[str, Holder] = {
    "matrix": Holder("matrix", matrix.read_matrix, matrix.write_matrix),
    "compressed_matrix": Holder(
        "compressed_matrix",
        lambda inp, b: matrix.read_matrix(inp, b, keep_compressed=True),
        matrix.write_matrix),
    "vector": Holder("vector", matrix.read_vector, matrix.write_vector),
    "int32_vector": Holder("int32_vector", intvec.read_int32_vector, intvec.write_int32_vector),
    "int32_vector_vector": Holder("int32_vector_vector", intvec.read_int32_vector_vector,
                                  intvec.write_int32_vector_vector),
    "posterior": Holder("posterior", intvec.read_posterior, intvec.write_posterior),
    "int32": Holder("int32", intvec.read_int32_scalar, intvec.write_int32_scalar),
    "float": Holder("float", intvec.read_float_scalar, intvec.write_float_scalar),
    "double": Holder("double", intvec.read_float_scalar, intvec.write_double_scalar),
    "bool": Holder("bool", intvec.read_bool_scalar, intvec.write_bool_scalar),
    "fst": Holder("fst", _obj_reader(_fst_cls), _obj_writer, marker=False),
    "lattice": Holder("lattice", _obj_reader(_lattice_cls), _obj_writer, marker=False),
    "compact_lattice": Holder("compact_lattice", _obj_reader(_compact_lattice_cls),
                              _obj_writer, marker=False),
    "transition_model": Holder("transition_model", _obj_reader(_transition_model_cls),
                               _obj_writer),
    "tree": Holder("tree", _obj_reader(_tree_cls), _obj_writer),
    "topology": Holder("topology", _obj_reader(_topology_cls), _obj_writer),
}
_ALIASES = {
    "alignment": "int32_vector", "ali": "int32_vector", "int_vector": "int32_vector",
    "int_vector_vector": "int32_vector_vector", "post": "posterior",
    "cmatrix": "compressed_matrix", "clat": "compact_lattice", "lat": "lattice",
}
HOLDER_NAMES = sorted(_HOLDERS) + ["auto"]


def get_holder(kind: str) -> Holder:
    name = _ALIASES.get(kind, kind)
    try:
        return _HOLDERS[name]
    except KeyError:
        raise ValueError(f"unknown table value kind {kind!r}; choose from "
                         f"{', '.join(HOLDER_NAMES)}") from None


def detect_holder(inp: KaldiInput) -> Holder:
    """Choose a holder from the first bytes of an object (``kind='auto'``)."""
    head = inp.peek(64)
    if head[:4] == FST_MAGIC or head[2:6] == FST_MAGIC:
        body = head[2:] if head[:2] == b"\0B" else head
        arc = _fst_arc_type(body)
        if arc == "lattice4":
            return _HOLDERS["lattice"]
        if arc == "compactlattice44":
            return _HOLDERS["compact_lattice"]
        return _HOLDERS["fst"]
    if head[:2] == b"\0B":
        tok = head[2:].split(b" ", 1)[0]
        if tok in (b"FM", b"DM", b"CM", b"CM2", b"CM3"):
            return _HOLDERS["matrix"]
        if tok in (b"FV", b"DV"):
            return _HOLDERS["vector"]
        if tok == b"<TransitionModel>":
            return _HOLDERS["transition_model"]
        if tok == b"ContextDependency":
            return _HOLDERS["tree"]
        if tok == b"<Topology>":
            return _HOLDERS["topology"]
        return _HOLDERS["int32_vector"]
    stripped = head.lstrip(b" \t")
    if stripped[:1] == b"[":
        rest = stripped[1:].lstrip(b" \t")
        # "[ ]" is an empty matrix or vector; a matrix is the likelier table.
        return (_HOLDERS["matrix"] if rest[:1] in (b"\n", b"\r", b"]")
                else _HOLDERS["vector"])
    if head[:1] == b"\n":
        return _HOLDERS[_text_fst_kind(inp)]
    if stripped.startswith(b"<TransitionModel>"):
        return _HOLDERS["transition_model"]
    if stripped.startswith(b"ContextDependency"):
        return _HOLDERS["tree"]
    if stripped.startswith(b"<Topology>"):
        return _HOLDERS["topology"]
    return _HOLDERS["int32_vector"]


def _text_fst_kind(inp: KaldiInput) -> str:
    """FST, lattice or compact lattice, from the weights of a text entry:
    ``g,a`` is a lattice weight, ``g,a,t1_t2`` a compact-lattice weight."""
    lines = inp.peek(4096).split(b"\n")[1:]
    for line in lines:
        if not line.strip():
            break
        fields = line.split(b"\t") if b"\t" in line else line.split()
        commas = fields[-1].count(b",")
        if commas == 1:
            return "lattice"
        if commas == 2:
            return "compact_lattice"
    return "fst"


def _fst_arc_type(body: bytes) -> str:
    """The arc type string of an OpenFst header (magic, fst type, arc type)."""
    try:
        n = struct.unpack_from("<i", body, 4)[0]
        m = struct.unpack_from("<i", body, 8 + n)[0]
        return body[12 + n:12 + n + m].decode("ascii")
    except (struct.error, UnicodeDecodeError):
        return ""


def holder_for_value(value: Any) -> Holder:
    """The holder that writes ``value`` (numpy arrays, torch tensors, lists
    of int arrays, posteriors and kbind objects)."""
    if isinstance(value, matrix.CompressedMatrix):
        return _HOLDERS["compressed_matrix"]
    cls = type(value).__name__
    by_class = {"Fst": "fst", "Lattice": "lattice", "CompactLattice": "compact_lattice",
                "TransitionModel": "transition_model", "ContextDependency": "tree",
                "HmmTopology": "topology"}
    if cls in by_class:
        return _HOLDERS[by_class[cls]]
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (bool, np.bool_)):
        return _HOLDERS["bool"]
    if isinstance(value, (int, np.integer)):
        return _HOLDERS["int32"]
    if isinstance(value, (float, np.floating)):
        return _HOLDERS["float"]
    if isinstance(value, np.ndarray):
        if value.ndim == 2 and value.dtype.kind == "f":
            return _HOLDERS["matrix"]
        if value.ndim == 1 and value.dtype.kind == "f":
            return _HOLDERS["vector"]
        if value.ndim == 1 and value.dtype.kind in "iu":
            return _HOLDERS["int32_vector"]
    if isinstance(value, (list, tuple)):
        if all(isinstance(x, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2
                                                    for p in x) for x in value) and value \
                and any(len(x) for x in value):
            return _HOLDERS["posterior"]
        if all(isinstance(x, (int, np.integer)) for x in value):
            return _HOLDERS["int32_vector"]
        if all(np.asarray(x).ndim == 1 and np.asarray(x).dtype.kind in "iu"
               or (isinstance(x, (list, tuple)) and len(x) == 0) for x in value):
            return _HOLDERS["int32_vector_vector"]
    raise TypeError(f"don't know how to write a {type(value).__name__} to a Kaldi table; "
                    "pass kind=... to write_table")
