"""kbind: Kaldi's hybrid HMM training recipes in PyTorch.

Subpackages: ``kbind.io`` (Kaldi file formats), ``kbind.data`` (data dirs,
audio, features), ``kbind.hmm`` (topology, transition model, tree), and the
training pieces built on them.
"""

__version__ = "0.1.0"
