"""Kaldi's learning-rate schedule (``steps/libs/nnet3/train/common.py``).

``train.py`` processes the training data in *iterations*; in iteration
``i`` each of ``num_jobs`` jobs trains on one archive, and the models are
averaged. The learning rate of iteration ``i`` is::

    effective = initial * exp(archives_processed * log(final / initial)
                              / archives_to_process)   (final on the last iteration)
    learning_rate = num_jobs * effective

i.e. an exponential decay of the *effective* learning rate from
``initial_effective_lrate`` to ``final_effective_lrate`` over the data, and
the per-job rate is ``num_jobs`` times that (averaging ``num_jobs`` models
divides the step by ``num_jobs`` again). A component's rate is that times
its ``learning_rate_factor``.

kbind trains one model (no averaging), so ``num_jobs`` only scales the rate
as Kaldi's formula does: ``num_jobs=1`` trains with the effective rate
itself; pass Kaldi's ``num_jobs`` to reproduce the per-job rates of a Kaldi
recipe. An "archive" here is one iteration's worth of minibatches, so
``archives_processed = iteration * num_jobs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["get_learning_rate", "LearningRateSchedule"]


def get_learning_rate(iter: int, num_jobs: int, num_iters: int, num_archives_processed: int,
                      num_archives_to_process: int, initial_effective_lrate: float,
                      final_effective_lrate: float) -> float:
    """Kaldi's ``get_learning_rate`` (same arguments, same result)."""
    if iter + 1 >= num_iters:
        effective = final_effective_lrate
    else:
        effective = initial_effective_lrate * math.exp(
            num_archives_processed * math.log(float(final_effective_lrate)
                                              / initial_effective_lrate)
            / num_archives_to_process)
    return num_jobs * effective


@dataclass
class LearningRateSchedule:
    """The schedule over ``num_iters`` iterations of ``num_jobs`` archives each."""
    initial_effective_lrate: float
    final_effective_lrate: float
    num_iters: int
    num_jobs: int = 1

    def __post_init__(self):
        if self.num_iters < 1 or self.num_jobs < 1:
            raise ValueError("num_iters and num_jobs must be >= 1")
        if self.initial_effective_lrate <= 0 or self.final_effective_lrate <= 0:
            raise ValueError("learning rates must be positive")

    @property
    def num_archives_to_process(self) -> int:
        return self.num_iters * self.num_jobs

    def learning_rate(self, iteration: int) -> float:
        return get_learning_rate(iteration, self.num_jobs, self.num_iters,
                                 iteration * self.num_jobs, self.num_archives_to_process,
                                 self.initial_effective_lrate, self.final_effective_lrate)

    def data_fraction(self, iteration: int) -> float:
        """Fraction of the data processed before ``iteration`` (dropout schedule)."""
        return min(1.0, iteration * self.num_jobs / self.num_archives_to_process)
