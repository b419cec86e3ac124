"""Kaldi HMM objects: topology, context-dependency tree, transition model and
alignment conversions, read and written bit-exactly in Kaldi's formats.

* :class:`HmmTopology` / :class:`HmmState` (``kbind.hmm.topology``)
* :class:`ContextDependency` and the EventMap classes (``kbind.hmm.tree``)
* :class:`TransitionModel` (``kbind.hmm.transition_model``)
* :func:`ali_to_pdf`, :func:`ali_to_phones`, :func:`split_to_phones`
  (``kbind.hmm.alignment``)

Each object class has ``read(inp, binary)`` / ``write(f, binary)`` for the
table layer and ``from_file`` / ``to_file`` convenience methods.
"""

from .alignment import ali_to_pdf, ali_to_phones, is_reordered, split_to_phones
from .topology import NO_PDF, HmmState, HmmTopology
from .transition_model import TransitionModel
from .tree import (PDF_CLASS_KEY, ConstantEventMap, ContextDependency, EventMap,
                   SplitEventMap, TableEventMap, read_event_map, write_event_map)

__all__ = [
    "HmmState", "HmmTopology", "NO_PDF",
    "EventMap", "ConstantEventMap", "TableEventMap", "SplitEventMap",
    "ContextDependency", "PDF_CLASS_KEY", "read_event_map", "write_event_map",
    "TransitionModel",
    "ali_to_pdf", "ali_to_phones", "split_to_phones", "is_reordered",
]

# lexicon, lang dirs and training graphs
from .graph_compiler import TrainingGraphCompiler, add_self_loops, make_h_transducer
from .lang import Lang, SymbolTable, prepare_lang
from .lexicon import Lexicon, OOVError

__all__ += ["Lexicon", "OOVError", "Lang", "SymbolTable", "prepare_lang",
            "TrainingGraphCompiler", "make_h_transducer", "add_self_loops"]
