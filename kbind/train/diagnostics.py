"""Held-out utterances and the ``compute_prob`` diagnostics on them.

Kaldi's egs scripts (``get_egs.sh``) draw ``valid_uttlist``, a random subset
of the data dir's utterances held out of training, and
``train_subset_uttlist``, a random subset of the others; ``compute_prob``
reports the objective on both ("valid" and "train") as training goes on.
:func:`split_held_out` makes that split from *all* the utterances with
features, before any is dropped for want of labels, so that the same seed
holds out the same utterances in every trainer (CE on alignments, LF-MMI on
its own supervision) whatever each can train on; the utterances without
labels are then left out of each list. At most a fifth of the utterances is
held out.

:func:`evaluating` runs a model as ``nnet3-compute-prob`` does (test-mode
batch norm and dropout, no derivatives); :func:`log_compute_prob` writes a
set's lines and metrics. The objective itself is each trainer's.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional

import torch

__all__ = ["HeldOutSplit", "split_held_out", "evaluating", "log_compute_prob"]


@dataclass
class HeldOutSplit:
    train: List[str]                # every utterance trained on (sorted)
    valid: List[str]                # held out of training (sorted)
    train_diagnostic: List[str]     # a subset of ``train`` for the "train" diagnostics


def split_held_out(utterances: Iterable[str], num_valid: int, num_train_diagnostic: int,
                   seed: int, usable: Optional[Callable[[str], bool]] = None) -> HeldOutSplit:
    """Draw the valid and train-diagnostic utterances (see the module doc).

    Args:
        utterances: every utterance with features (any order: the draw
            depends on the set only).
        num_valid: utterances held out (at most a fifth of them).
        num_train_diagnostic: training utterances for the "train" diagnostics.
        seed: the trainer's seed.
        usable: which utterances have labels; the others are drawn like the
            rest, then left out of every list.
    """
    shuffled = sorted(set(utterances))
    random.Random(seed).shuffle(shuffled)
    n_valid = min(num_valid, len(shuffled) // 5)
    keep = usable or (lambda u: True)
    valid = [u for u in shuffled[:n_valid] if keep(u)]
    train = [u for u in shuffled[n_valid:] if keep(u)]
    return HeldOutSplit(sorted(train), sorted(valid), sorted(train[:num_train_diagnostic]))


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``with evaluating(model):`` test mode and no derivatives, the model's mode
    restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def log_compute_prob(log: logging.Logger, writer, name: str, tag, lines: List[str],
                     values: Dict[str, float]) -> None:
    """``[compute_prob_<name>.<tag>] <line>`` for each line (``name``: valid or
    train, ``tag``: the iteration or e.g. ``epoch3``); the values go to the
    metrics log under ``<name>/`` at an integer ``tag``."""
    for line in lines:
        log.info("[compute_prob_%s.%s] %s", name, tag, line)
    if isinstance(tag, int):
        writer.scalars(values, tag, prefix=f"{name}/")
