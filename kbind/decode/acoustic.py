"""Acoustic scores of whole utterances from a kbind model, for decoding and alignment.

:class:`AcousticModel` bundles a network with how its outputs become
log-likelihoods, and saves / loads as one file (``final.pt``):

* a chain model (``priors=None``): the chain output is used as it is (Kaldi's
  ``nnet3-latgen-faster`` on a chain model, no prior);
* a cross-entropy model: ``log_softmax(logits) - prior_scale * log(prior)``
  (Kaldi's ``AmNnetSimple`` priors, :class:`kbind.train.priors.LabelPriors`).

:func:`compute_loglikes` runs the network over whole utterances with its
context (edges padded by repeating the first / last frame, as
``nnet3-compute``), batching utterances of similar length.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np
import torch

__all__ = ["MODEL_TYPES", "build_model", "AcousticModel", "network_output",
           "compute_loglikes"]


def _model_types():
    from kbind.nn import BLSTM, TDNN, TDNNF, BlstmConfig, TdnnConfig, TdnnfConfig
    return {"tdnnf": (TDNNF, TdnnfConfig), "tdnn": (TDNN, TdnnConfig),
            "blstm": (BLSTM, BlstmConfig)}


MODEL_TYPES = ("tdnnf", "tdnn", "blstm")


def build_model(model_type: str, feat_dim: int, num_pdfs: int, config=None):
    """A kbind network by name (``tdnnf`` | ``tdnn`` | ``blstm``); ``config`` is
    its config dataclass or a dict of its fields."""
    from kbind.config import _from_dict
    types = _model_types()
    if model_type not in types:
        raise ValueError(f"unknown model type {model_type!r} (one of {', '.join(types)})")
    cls, cfg_cls = types[model_type]
    if isinstance(config, dict):
        config = _from_dict(cfg_cls, config)
    return cls(feat_dim, num_pdfs, config)


class AcousticModel:
    """A network plus the way its outputs become log-likelihoods."""

    def __init__(self, model: torch.nn.Module, model_type: str, priors=None,
                 prior_scale: float = 1.0):
        self.model = model
        self.model_type = model_type
        self.priors = priors
        self.prior_scale = prior_scale

    @property
    def num_pdfs(self) -> int:
        return int(self.model.num_pdfs)

    def loglikes(self, output: torch.Tensor) -> torch.Tensor:
        if self.priors is None:
            return output
        return self.priors.loglikes(output, self.prior_scale)

    def state(self) -> dict:
        return {"model_type": self.model_type, "model": self.model.state_dict(),
                "model_config": dataclasses.asdict(self.model.config),
                "feat_dim": int(self.model.feat_dim), "num_pdfs": int(self.model.num_pdfs),
                "priors": self.priors.state_dict() if self.priors is not None else None,
                "prior_scale": self.prior_scale}

    def save(self, path, **extra) -> None:
        from kbind.train.checkpoint import atomic_save
        atomic_save({**self.state(), **extra}, str(path))

    @classmethod
    def from_state(cls, obj: dict, device="cpu") -> "AcousticModel":
        from kbind.train.priors import LabelPriors
        model = build_model(obj["model_type"], obj["feat_dim"], obj["num_pdfs"],
                            obj["model_config"])
        model.load_state_dict(obj["model"])
        model.to(device).eval()
        pri = obj.get("priors")
        return cls(model, obj["model_type"],
                   LabelPriors.from_state_dict(pri) if pri is not None else None,
                   obj.get("prior_scale", 1.0))

    @classmethod
    def load(cls, path, device="cpu") -> "AcousticModel":
        """``path``: a ``final.pt`` written by :meth:`save` (or a dir holding one).
        A ``final.pt`` of ``trainers/train_lfmmi.py`` (a TDNN-F chain model) loads too."""
        p = Path(path)
        if p.is_dir():
            p = p / "final.pt"
        if not p.exists():
            raise FileNotFoundError(f"{p}: no model file")
        obj = torch.load(str(p), map_location=device, weights_only=False)
        if "model_type" not in obj:        # train_lfmmi.py's final.pt
            if "config" not in obj or "model" not in obj:
                raise ValueError(f"{p}: not a kbind model file")
            obj = {"model_type": "tdnnf", "model": obj["model"],
                   "model_config": obj["config"]["model"], "feat_dim": obj["feat_dim"],
                   "num_pdfs": obj["num_pdfs"], "priors": None}
        return cls.from_state(obj, device)


def network_output(model, x: torch.Tensor, lengths: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
    """The main output ``(B, T_out, D)`` of a kbind network on ``x``; ``lengths``
    (valid input frames per sequence) go to recurrent models, which need them;
    convolutional ones see padded frames only beyond each sequence's outputs."""
    if lengths is not None and hasattr(model, "lstms"):
        return model(x, lengths).output
    return model(x).output


def compute_loglikes(am: Union[AcousticModel, torch.nn.Module], features, utterances:
                     Optional[Iterable[str]] = None, max_frames_per_batch: int = 20000,
                     device="cpu") -> Dict[str, torch.Tensor]:
    """``utt -> (T_out, num_pdfs)`` float32 log-likelihoods (CPU tensors).

    ``features``: a :class:`kbind.chain.egs.FeatureSource` (or any callable
    ``utt -> (T, F) array`` with ``num_frames(utt)``); ``utterances``
    defaults to all of the source's."""
    from kbind.chain.egs import extract_with_padding
    if not isinstance(am, AcousticModel):
        am = AcousticModel(am, "chain")
    model = am.model
    lc, rc = model.left_context, model.right_context
    was_training = model.training
    model.eval()
    utts = list(utterances) if utterances is not None else list(features.utterances)
    utts.sort(key=features.num_frames)
    out: Dict[str, torch.Tensor] = {}
    i = 0
    try:
        with torch.no_grad():
            while i < len(utts):
                # utterances of similar length (sorted), padded to the longest by
                # repeating each one's last frame: a convolutional model's outputs
                # over the real frames are unchanged; a recurrent one gets lengths
                j = i + 1
                while j < len(utts) and (j - i + 1) * (features.num_frames(utts[j]) + lc + rc) \
                        <= max_frames_per_batch:
                    j += 1
                group = utts[i:j]
                n_max = features.num_frames(group[-1])
                x = torch.from_numpy(np.stack([
                    extract_with_padding(np.asarray(features(u)), -lc, n_max + rc)
                    for u in group])).to(device)
                lens = torch.tensor([features.num_frames(u) for u in group])
                y = network_output(model, x, lens)
                y = am.loglikes(y)
                for u, row in zip(group, y):
                    n_out = model.output_frames(features.num_frames(u) + lc + rc)
                    out[u] = row[:n_out].float().cpu().contiguous()
                i = j
    finally:
        model.train(was_training)
    return out
