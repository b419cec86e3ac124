"""Bidirectional LSTM acoustic model for frame cross-entropy training.

A stack of ``num_layers`` (B)LSTM layers (pykaldi2's default: 3
bidirectional layers of 512 cells), optionally with a recurrent projection
(LSTMP, ``proj_dim``), dropout between layers, and a linear output layer to
``num_pdfs`` logits per frame, with no model context.

Frame rate. With ``frame_subsampling_factor = 1`` (default) output frame ``t``
is input frame ``t``. With ``f > 1`` (a "low frame rate" BLSTM, for
alignments made at the chain models' output rate) the input is stacked: frames
``f·t .. f·t + f - 1`` are concatenated into one ``f · feat_dim`` vector (the
last group padded by repeating the last frame), so ``T_out = ceil(T / f)``
and the LSTMs run ``f`` times fewer steps.

Chunked training. Utterances are cut into chunks; each call may carry the
*forward* direction's state across consecutive chunks of the same utterances
(``state`` in, ``state`` out: per layer the final ``(h, c)`` of the forward
direction at each sequence's last valid frame). The backward direction always
starts from zeros at the end of the chunk (a context-free cut on the right),
as does everything when ``state`` is ``None``. With one layer, or with
``bidirectional=False``, carrying the state makes two halves compute exactly
what the whole sequence computes in the forward direction; in a deeper
bidirectional stack upper layers also see the backward direction of the
chunk, so chunking changes them (which is why Kaldi gives BLSTMs extra right
context). Detach the returned state between chunks to truncate BPTT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = ["BlstmConfig", "BLSTM", "BlstmOutput", "LstmState"]

LstmState = List[Tuple[torch.Tensor, torch.Tensor]]
"""Per layer, the forward direction's ``(h, c)``, each ``(B, H)``."""


@dataclass
class BlstmConfig:
    """BLSTM acoustic model; defaults are pykaldi2's."""

    hidden_dim: int = 512           # LSTM cells per direction
    num_layers: int = 3
    bidirectional: bool = True
    proj_dim: int = 0               # recurrent projection dim (LSTMP); 0 for none
    dropout: float = 0.0            # between layers and before the output layer
    max_change: float = 0.75        # per-component max-change of the LSTM layers
    output_max_change: float = 1.5  # ... of the output layer
    frame_subsampling_factor: int = 1  # >1: stack this many input frames per LSTM step


class BlstmOutput(NamedTuple):
    output: torch.Tensor
    """``(B, T, num_pdfs)`` logits (apply log-softmax / cross-entropy outside)."""
    state: LstmState
    """Forward-direction state after each sequence's last valid frame."""


class BLSTM(nn.Module):
    """(B)LSTM acoustic model; see the module docstring.

    Args:
        feat_dim: input feature dim.
        num_pdfs: number of outputs.
        config: :class:`BlstmConfig`.

    Example::

        model = BLSTM(40, 2000)
        out, state = model(x, lengths)                   # first chunk
        out, state = model(x2, lengths2, [(h.detach(), c.detach()) for h, c in state])
    """

    left_context = 0
    right_context = 0

    def __init__(self, feat_dim: int, num_pdfs: int, config: Optional[BlstmConfig] = None):
        super().__init__()
        cfg = dataclasses.replace(config) if config is not None else BlstmConfig()
        if cfg.num_layers < 1 or cfg.hidden_dim < 1:
            raise ValueError("BlstmConfig: num_layers and hidden_dim must be >= 1")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"BlstmConfig: dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.frame_subsampling_factor < 1:
            raise ValueError("BlstmConfig: frame_subsampling_factor must be >= 1")
        self.config = cfg
        self.frame_subsampling_factor = cfg.frame_subsampling_factor
        self.feat_dim = feat_dim
        self.num_pdfs = num_pdfs
        self.num_directions = 2 if cfg.bidirectional else 1
        self.state_dim = cfg.proj_dim if cfg.proj_dim > 0 else cfg.hidden_dim
        self.lstms = nn.ModuleList()
        input_dim = feat_dim * cfg.frame_subsampling_factor
        for _ in range(cfg.num_layers):
            lstm = nn.LSTM(input_dim, cfg.hidden_dim, batch_first=True,
                           bidirectional=cfg.bidirectional, proj_size=max(0, cfg.proj_dim))
            lstm.max_change = cfg.max_change
            self.lstms.append(lstm)
            input_dim = self.state_dim * self.num_directions
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(input_dim, num_pdfs)
        self.output.max_change = cfg.output_max_change

    def output_frames(self, num_input_frames: int) -> int:
        f = self.frame_subsampling_factor
        return -(-num_input_frames // f)

    def _stack(self, x: torch.Tensor, lengths: Optional[torch.Tensor]):
        """Stack ``f`` consecutive frames (see the module doc)."""
        f = self.frame_subsampling_factor
        if f == 1:
            return x, lengths
        b, t, d = x.shape
        t_out = -(-t // f)
        if t_out * f != t:
            x = torch.cat([x, x[:, -1:].expand(b, t_out * f - t, d)], 1)
        if lengths is not None:
            # repeat each sequence's own last frame into its padded group
            lengths = lengths.to(torch.long)
            idx = torch.minimum(torch.arange(t_out * f, device=x.device)[None, :],
                                (lengths.to(x.device) - 1).clamp(min=0)[:, None])
            x = torch.gather(x, 1, idx[:, :, None].expand(b, t_out * f, d))
            lengths = -(-lengths // f)
        return x.reshape(b, t_out, f * d), lengths

    def _initial_state(self, layer: int, batch: int, ref: torch.Tensor,
                       state: Optional[LstmState]) -> Tuple[torch.Tensor, torch.Tensor]:
        d = self.num_directions
        h0 = ref.new_zeros(d, batch, self.state_dim)
        c0 = ref.new_zeros(d, batch, self.config.hidden_dim)
        if state is not None:
            h, c = state[layer]
            h0 = torch.cat([h.unsqueeze(0), h0[1:]]) if d == 2 else h.unsqueeze(0)
            c0 = torch.cat([c.unsqueeze(0), c0[1:]]) if d == 2 else c.unsqueeze(0)
        return h0, c0

    def encode(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
               state: Optional[LstmState] = None) -> Tuple[torch.Tensor, LstmState]:
        """The last LSTM layer's output ``(B, T, dirs·state_dim)`` (forward direction
        first) and the new forward-direction state."""
        if x.dim() != 3 or x.shape[-1] != self.feat_dim:
            raise ValueError(f"BLSTM expects (B, T, {self.feat_dim}) input, "
                             f"got {tuple(x.shape)}")
        if state is not None and len(state) != len(self.lstms):
            raise ValueError(f"BLSTM: state has {len(state)} layers, the model "
                             f"{len(self.lstms)}")
        x, lengths = self._stack(x, lengths)
        batch, num_frames = x.shape[:2]
        h = x
        if lengths is not None:
            h = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        new_state = []
        for k, lstm in enumerate(self.lstms):
            if k > 0 and self.dropout.p > 0:
                h = (PackedSequence(self.dropout(h.data), h.batch_sizes, h.sorted_indices,
                                    h.unsorted_indices)
                     if isinstance(h, PackedSequence) else self.dropout(h))
            h, (h_n, c_n) = lstm(h, self._initial_state(k, batch, x, state))
            new_state.append((h_n[0], c_n[0]))
        if isinstance(h, PackedSequence):
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=num_frames)
        return h, new_state

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                state: Optional[LstmState] = None) -> BlstmOutput:
        """``x``: ``(B, T, feat_dim)``; ``lengths``: ``(B,)`` valid input frames (None: all T).

        Returns :class:`BlstmOutput` with logits ``(B, T_out, num_pdfs)``,
        ``T_out = ceil(T / frame_subsampling_factor)`` (padded
        frames hold the output of zero LSTM states) and the new state.
        """
        h, new_state = self.encode(x, lengths, state)
        return BlstmOutput(self.output(self.dropout(h)), new_state)
