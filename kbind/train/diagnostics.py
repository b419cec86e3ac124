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
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional

__all__ = ["HeldOutSplit", "split_held_out"]


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
