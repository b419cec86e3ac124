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

The number of jobs grows linearly from ``num_jobs_initial`` to
``num_jobs_final`` over the iterations (Kaldi's ``get_current_num_jobs``
with ``num_jobs_step = 1``: ``int(0.5 + initial + (final − initial) · i /
num_iters)``), ``archives_processed`` is the sum of the jobs of the
iterations before, and ``archives_to_process`` the sum over all iterations
(Kaldi fixes ``num_iters`` from the archives instead; this class is given
``num_iters`` and counts the archives those iterations process). The
parameter-L2 factor of an iteration is ``1 / num_jobs`` of that iteration.

kbind trains one model (no averaging): ``num_jobs=1`` trains with the
effective rate itself (equivalent to Kaldi's averaged update, whose effective
step per minibatch is the effective rate); pass Kaldi's numbers of jobs to
reproduce a recipe's per-job rates. Under data-parallel training with ``J``
processes whose gradients are averaged, ``num_jobs = J`` gives each
minibatch Kaldi's effective rate. An "archive" here is one iteration's worth
of minibatches per job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["get_learning_rate", "get_current_num_jobs", "LearningRateSchedule"]


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


def get_current_num_jobs(it: int, num_it: int, start: int, step: int, end: int) -> int:
    """Kaldi's ``get_current_num_jobs``: the number of jobs of iteration ``it``."""
    ideal = float(start) + (end - start) * float(it) / num_it
    if ideal < step:
        return int(0.5 + ideal)
    return int(0.5 + ideal / step) * step


@dataclass
class LearningRateSchedule:
    """The schedule over ``num_iters`` iterations; ``num_jobs`` archives per
    iteration, growing to ``num_jobs_final`` (0: constant) by the end."""
    initial_effective_lrate: float
    final_effective_lrate: float
    num_iters: int
    num_jobs: int = 1
    num_jobs_final: int = 0

    def __post_init__(self):
        if self.num_iters < 1 or self.num_jobs < 1:
            raise ValueError("num_iters and num_jobs must be >= 1")
        if self.num_jobs_final < 0:
            raise ValueError("num_jobs_final must be >= 0 (0: same as num_jobs)")
        if self.initial_effective_lrate <= 0 or self.final_effective_lrate <= 0:
            raise ValueError("learning rates must be positive")
        final = self.num_jobs_final or self.num_jobs
        self._jobs = [get_current_num_jobs(i, self.num_iters, self.num_jobs, 1, final)
                      for i in range(self.num_iters)]
        self._processed = [0]
        for j in self._jobs:
            self._processed.append(self._processed[-1] + j)

    def jobs(self, iteration: int) -> int:
        """Number of jobs (archives) of ``iteration``."""
        return self._jobs[min(max(iteration, 0), self.num_iters - 1)]

    def archives_processed(self, iteration: int) -> int:
        """Archives processed before ``iteration``."""
        return self._processed[min(max(iteration, 0), self.num_iters)]

    @property
    def num_archives_to_process(self) -> int:
        return self._processed[-1]

    def learning_rate(self, iteration: int) -> float:
        return get_learning_rate(iteration, self.jobs(iteration), self.num_iters,
                                 self.archives_processed(iteration),
                                 self.num_archives_to_process,
                                 self.initial_effective_lrate, self.final_effective_lrate)

    def l2_regularize_factor(self, iteration: int) -> float:
        """train.py's ``--l2-regularize-factor`` = ``1 / num_jobs`` of the iteration."""
        return 1.0 / self.jobs(iteration)

    def data_fraction(self, iteration: int) -> float:
        """Fraction of the data processed before ``iteration`` (dropout schedule)."""
        return min(1.0, self.archives_processed(iteration) / self.num_archives_to_process)
