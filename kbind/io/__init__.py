"""Kaldi file formats: tables (ark/scp), matrices, vectors, alignments,
posteriors, FSTs, lattices and HMM objects, binary and text.

Which code handles what:

* tables, specifiers, pipes, matrices (incl. every compression method),
  vectors, int32 vectors, vector-vectors, posteriors: kbind's own readers
  and writers (numpy; no copies beyond one read per object);
* OpenFst binary FSTs (vector and const), Kaldi lattices and compact
  lattices: kbind's own readers/writers (:mod:`kbind.io.fst`,
  :mod:`kbind.io.lattice`), converted to kaldifst objects for FST
  algorithms;
* HMM topology, transition model and tree: :mod:`kbind.hmm`.
"""

from .errors import KaldiFormatError, KaldiIOError
from .holders import HOLDER_NAMES
from .matrix import CompressedMatrix, CompressionMethod, compress, decompress
from .table import (RandomAccessTable, SequentialTableReader, TableWriter, read_object,
                    read_script, read_table, write_object, write_table)

__all__ = [
    "KaldiFormatError", "KaldiIOError", "HOLDER_NAMES", "CompressedMatrix",
    "CompressionMethod", "compress", "decompress", "RandomAccessTable",
    "SequentialTableReader", "TableWriter", "read_object", "read_script", "read_table",
    "write_object", "write_table",
]
