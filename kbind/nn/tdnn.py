"""TDNN and TDNN-F chain acoustic models with frame subsampling inside the network.

Time alignment (Kaldi's egs convention). A chunk of ``chunk_width`` input
frames with ``t = 0 … chunk_width−1`` is fed together with the model's
context: the input tensor ``x`` of shape ``(B, T_in, feat_dim)`` holds times
``t = −left_context … T_in − left_context − 1``, i.e. ``x[:, j]`` is time
``j − left_context``. Output frame ``i`` is time ``t = fss · i`` (fss = the
frame subsampling factor, 3 for chain) and depends on exactly the input
frames ``j ∈ [fss·i, fss·i + left_context + right_context]``. The model
computes every output whose context is present::

    T_out = output_frames(T_in) = ceil((T_in − left_context − right_context) / fss)

so ``T_in = left_context + right_context + chunk_width`` gives
``ceil(chunk_width / fss)`` outputs: 50 for 150. Kaldi rounds chunk widths
up to a multiple of fss (``RoundUpNumFrames``: 110 → 111, 100 → 102), so
for those the count is ``chunk_width / fss`` of the rounded width, and the
same formula holds for the raw width (110 → 37, 100 → 34).

Only the frames needed for those outputs are computed at each layer (see
:mod:`kbind.nn.layers`): layers after the subsampling point run at every
third frame, and batch-norm statistics use exactly those frames, as in
nnet3. ``left_context``/``right_context`` are what ``nnet3-info`` reports:
the sum of the most negative / most positive offsets along the stack (for
TDNN-F, ``1`` for the input splice plus one stride per tdnnf layer).

Heads (Kaldi's chain recipes): ``output`` (chain, no log-softmax) and, when
``xent_regularize > 0``, ``output_xent`` (log-softmax) whose output layer
has ``learning_rate_factor = 0.5 / xent_regularize``; both branch from the
last hidden layer through their own prefinal layer.

iVectors and Kaldi's fixed LDA/IDCT/delta front end are not modelled: the
input layer is a learned affine over frames spliced at ``input_offsets``.
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from .layers import (OutputLayer, PrefinalLayer, TdnnAffine, TdnnfLayer, TdnnLayer, Times)

__all__ = ["TdnnfConfig", "TdnnConfig", "TDNNF", "TDNN", "ChainModelOutput"]

_MAX_PLANS = 32  # frame-time plans kept per model (one per input length seen)


class ChainModelOutput(NamedTuple):
    """Kaldi's two output nodes, each ``(B, T_out, num_pdfs)``."""

    output: torch.Tensor
    """The chain output (``output``), no log-softmax."""
    output_xent: Optional[torch.Tensor]
    """The cross-entropy regulariser's log-softmax (``output-xent``), or None."""


@dataclass
class TdnnfConfig:
    """TDNN-F chain model (mini_librispeech ``run_tdnn_1k.sh`` layout).

    Defaults are a small model for CPU training; :meth:`kaldi` gives the recipe's.
    """

    dim: int = 256                      # hidden dim (tdnn1 and every tdnnf layer)
    bottleneck_dim: int = 64            # tdnnf bottleneck
    time_strides: List[int] = field(default_factory=lambda: [1, 1, 0, 3, 3, 3])
    input_offsets: List[int] = field(default_factory=lambda: [-1, 0, 1])
    bypass_scale: float = 0.66          # tdnnf bypass-scale
    dropout: float = 0.0                # initial tdnnf dropout (schedule sets it later)
    prefinal_dim: int = 128             # linear prefinal-l and prefinal small-dim
    prefinal_big_dim: int = 256         # prefinal big-dim
    frame_subsampling_factor: int = 3
    xent_regularize: float = 0.1        # 0: no xent head; else its lr factor is 0.5/this
    l2_regularize: float = 0.03         # hidden components (tdnn, tdnnf, linear, prefinal)
    output_l2_regularize: float = 0.015  # output layers
    max_change: float = 0.75            # hidden components
    output_max_change: float = 1.5      # output layers
    natural_gradient: bool = True       # NG-SGD in every affine/linear (Kaldi's default)

    @classmethod
    def kaldi(cls) -> "TdnnfConfig":
        """mini_librispeech ``run_tdnn_1k.sh``: 13 layers, dim 1024, bottleneck 128.

        tdnn1 (here spliced at -1,0,1), tdnnf2-4 stride 1, tdnnf5 stride 0,
        tdnnf6-13 stride 3, prefinal-l 192, prefinal big 1024 / small 192.
        Context 28/28 (Kaldi's own is 29: its delta layer splices ±2).
        """
        return cls(dim=1024, bottleneck_dim=128, time_strides=[1, 1, 1, 0] + [3] * 8,
                   prefinal_dim=192, prefinal_big_dim=1024)


@dataclass
class TdnnConfig:
    """Plain TDNN (``relu-batchnorm-layer`` stack, Kaldi chain ``tdnn_1a`` layout)."""

    dim: int = 256
    splices: List[List[int]] = field(default_factory=lambda: [
        [-1, 0, 1], [-1, 0, 1], [-1, 0, 1], [-3, 0, 3], [-3, 0, 3], [-3, 0, 3]])
    prefinal_target_rms: float = 0.5    # relu-batchnorm prefinal-chain / prefinal-xent
    frame_subsampling_factor: int = 3   # 1 for frame-level cross-entropy training
    xent_regularize: float = 0.1
    l2_regularize: float = 0.0
    output_l2_regularize: float = 0.0
    max_change: float = 0.75
    output_max_change: float = 1.5
    natural_gradient: bool = True       # NG-SGD in every affine (Kaldi's default)


def _check_config(cfg) -> None:
    if cfg.frame_subsampling_factor < 1:
        raise ValueError(f"frame_subsampling_factor must be >= 1, got "
                         f"{cfg.frame_subsampling_factor}")
    if cfg.xent_regularize < 0:
        raise ValueError(f"xent_regularize must be >= 0, got {cfg.xent_regularize}")


class _ChunkModel(nn.Module):
    """The time bookkeeping shared by :class:`TDNN` and :class:`TDNNF`.

    Subclasses set ``feat_dim``, ``num_pdfs``, ``frame_subsampling_factor``,
    ``layers`` (an ``nn.ModuleList`` of layers with ``input_times`` and a
    ``forward(x, in_times, out_times)``) and ``prefinal_l`` (a module or
    None), then call ``_init_heads``.
    """

    layers: nn.ModuleList

    def _init_context(self) -> None:
        times = self._required_times((0,))[0]
        self.left_context = max(0, -times[0])
        self.right_context = max(0, times[-1])
        self._plans: "collections.OrderedDict[int, List[Tuple[Times, Times]]]" = (
            collections.OrderedDict())

    def _required_times(self, out_times: Times) -> List[Times]:
        """``[input times of layer 0, …, output times of the last layer]``."""
        needed = [out_times]
        for layer in reversed(self.layers):
            needed.append(layer.input_times(needed[-1]))
        return needed[::-1]

    def _init_heads(self, cfg, head_dim: int, make_prefinal) -> None:
        """``prefinal_chain → output`` and, if ``xent_regularize > 0``,
        ``prefinal_xent → output_xent`` (lr factor ``0.5 / xent_regularize``)."""
        output = dict(max_change=cfg.output_max_change, l2_regularize=cfg.output_l2_regularize,
                      natural_gradient=cfg.natural_gradient)
        self.prefinal_chain = make_prefinal()
        self.output = OutputLayer(head_dim, self.num_pdfs, include_log_softmax=False, **output)
        if cfg.xent_regularize > 0:
            self.prefinal_xent = make_prefinal()
            self.output_xent = OutputLayer(head_dim, self.num_pdfs, include_log_softmax=True,
                                           learning_rate_factor=0.5 / cfg.xent_regularize,
                                           **output)
        else:
            self.prefinal_xent = self.output_xent = None
        self._init_context()

    def _heads(self, h: torch.Tensor) -> ChainModelOutput:
        if self.prefinal_l is not None:
            h = self.prefinal_l(h)
        chain = self.output(self.prefinal_chain(h))
        xent = (self.output_xent(self.prefinal_xent(h)) if self.output_xent is not None
                else None)
        return ChainModelOutput(chain, xent)

    def output_frames(self, num_input_frames: int) -> int:
        """Number of output frames for ``num_input_frames`` input frames (with context)."""
        inner = num_input_frames - self.left_context - self.right_context
        return max(0, -(-inner // self.frame_subsampling_factor))

    def output_times(self, num_input_frames: int) -> Times:
        """Times ``fss·i`` of the outputs, relative to the first chunk frame."""
        fss = self.frame_subsampling_factor
        return tuple(fss * i for i in range(self.output_frames(num_input_frames)))

    def _plan(self, num_input_frames: int) -> List[Tuple[Times, Times]]:
        plan = self._plans.get(num_input_frames)
        if plan is not None:
            self._plans.move_to_end(num_input_frames)
        else:
            out_times = self.output_times(num_input_frames)
            if not out_times:
                raise ValueError(
                    f"{num_input_frames} input frames give no output: the model needs "
                    f"left_context + right_context + 1 = "
                    f"{self.left_context + self.right_context + 1} at least")
            needed = self._required_times(out_times)
            needed[0] = tuple(range(-self.left_context, num_input_frames - self.left_context))
            plan = list(zip(needed[:-1], needed[1:]))
            self._plans[num_input_frames] = plan
            if len(self._plans) > _MAX_PLANS:
                self._plans.popitem(last=False)
        return plan

    def forward(self, x: torch.Tensor) -> ChainModelOutput:
        """``x``: ``(B, T_in, feat_dim)`` with ``T_in = left + right + chunk``.

        Returns :class:`ChainModelOutput` of ``(B, output_frames(T_in), num_pdfs)``.
        """
        if x.dim() != 3 or x.shape[-1] != self.feat_dim:
            raise ValueError(f"{type(self).__name__} expects (B, T, {self.feat_dim}) input, "
                             f"got {tuple(x.shape)}")
        h = x
        for layer, (in_times, out_times) in zip(self.layers, self._plan(x.shape[1])):
            h = layer(h, in_times, out_times)
        return self._heads(h)


class TDNNF(_ChunkModel):
    """Kaldi's TDNN-F chain model (see the module docstring for the time alignment).

    Layout: ``tdnn1`` (spliced affine, ReLU, BN) → ``tdnnf[k]`` layers →
    ``prefinal_l`` (semi-orthogonal linear) → ``prefinal_chain`` → ``output``
    and ``prefinal_xent`` → ``output_xent``.

    Args:
        feat_dim: input feature dim (e.g. 40 hires MFCC).
        num_pdfs: number of outputs (pdf-ids of the chain tree).
        config: :class:`TdnnfConfig`; ``TdnnfConfig.kaldi()`` for the recipe size.

    Example::

        model = TDNNF(40, 2000)
        x = torch.randn(64, model.left_context + 150 + model.right_context, 40)
        out = model(x)          # out.output: (64, 50, 2000)
    """

    def __init__(self, feat_dim: int, num_pdfs: int, config: Optional[TdnnfConfig] = None):
        super().__init__()
        cfg = dataclasses.replace(config) if config is not None else TdnnfConfig()
        _check_config(cfg)
        self.config = cfg
        self.feat_dim = feat_dim
        self.num_pdfs = num_pdfs
        self.frame_subsampling_factor = cfg.frame_subsampling_factor
        hidden = dict(max_change=cfg.max_change, l2_regularize=cfg.l2_regularize,
                      natural_gradient=cfg.natural_gradient)
        layers = [TdnnLayer(feat_dim, cfg.dim, cfg.input_offsets, **hidden)]
        layers += [TdnnfLayer(cfg.dim, cfg.bottleneck_dim, s, bypass_scale=cfg.bypass_scale,
                              dropout=cfg.dropout, **hidden) for s in cfg.time_strides]
        self.layers = nn.ModuleList(layers)
        self.prefinal_l = TdnnAffine(cfg.dim, cfg.prefinal_dim, bias=False,
                                     orthonormal_constraint=-1.0, **hidden)
        self._init_heads(cfg, cfg.prefinal_dim, lambda: PrefinalLayer(
            cfg.prefinal_dim, cfg.prefinal_big_dim, cfg.prefinal_dim, **hidden))


class TDNN(_ChunkModel):
    """Plain TDNN: ``relu-batchnorm-layer`` per entry of ``config.splices``.

    Heads as Kaldi's chain ``tdnn_1a``: ``prefinal_chain`` (relu-batchnorm,
    target rms 0.5) → ``output``; ``prefinal_xent`` → ``output_xent``. For
    frame cross-entropy training use ``frame_subsampling_factor=1``,
    ``xent_regularize=0`` and the ``output`` logits.
    """

    def __init__(self, feat_dim: int, num_pdfs: int, config: Optional[TdnnConfig] = None):
        super().__init__()
        cfg = dataclasses.replace(config) if config is not None else TdnnConfig()
        _check_config(cfg)
        if not cfg.splices:
            raise ValueError("TdnnConfig.splices must have at least one layer")
        self.config = cfg
        self.feat_dim = feat_dim
        self.num_pdfs = num_pdfs
        self.frame_subsampling_factor = cfg.frame_subsampling_factor
        hidden = dict(max_change=cfg.max_change, l2_regularize=cfg.l2_regularize,
                      natural_gradient=cfg.natural_gradient)
        self.layers = nn.ModuleList(
            TdnnLayer(feat_dim if k == 0 else cfg.dim, cfg.dim, offsets, **hidden)
            for k, offsets in enumerate(cfg.splices))
        self.prefinal_l = None
        self._init_heads(cfg, cfg.dim, lambda: TdnnLayer(
            cfg.dim, cfg.dim, (0,), target_rms=cfg.prefinal_target_rms, **hidden))
