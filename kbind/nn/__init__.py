"""Acoustic models and Kaldi's nnet3 layers: TDNN, TDNN-F, BLSTM, batch norm,
continuous dropout and its schedule, the semi-orthogonal constraint, and
NG-SGD layers (:mod:`kbind.nn.natural_gradient`).

See :mod:`kbind.nn.tdnn` for how input and output frames line up under
frame subsampling, and :mod:`kbind.nn.layers` for the layer maths.
"""

from .blstm import BLSTM, BlstmConfig, BlstmOutput, LstmState
from .layers import (GeneralDropout, KaldiBatchNorm, OutputLayer, PrefinalLayer, TdnnAffine,
                     TdnnfLayer, TdnnLayer, Times, component_param_groups, dropout_proportion,
                     dropout_proportions, parse_dropout_schedule, scale_batchnorm_stats,
                     set_dropout_proportions)
from .natural_gradient import (NaturalGradientLinear, kaldi_ng_ranks, natural_gradient_grads,
                               set_natural_gradient)
from .orthonormal import apply_orthonormal_constraints, constrain_orthonormal_
from .tdnn import TDNN, TDNNF, ChainModelOutput, TdnnConfig, TdnnfConfig

__all__ = [
    "TDNN", "TDNNF", "BLSTM", "TdnnConfig", "TdnnfConfig", "BlstmConfig", "ChainModelOutput",
    "BlstmOutput", "LstmState", "KaldiBatchNorm", "GeneralDropout", "TdnnAffine", "TdnnLayer",
    "TdnnfLayer", "PrefinalLayer", "OutputLayer", "Times", "scale_batchnorm_stats",
    "component_param_groups", "parse_dropout_schedule", "dropout_proportions",
    "dropout_proportion", "set_dropout_proportions", "constrain_orthonormal_",
    "apply_orthonormal_constraints", "NaturalGradientLinear", "set_natural_gradient",
    "kaldi_ng_ranks", "natural_gradient_grads",
]
