"""Pieces shared by kbind's trainers (``trainers/train_*.py``).

* :mod:`kbind.train.schedule` -- Kaldi's learning-rate schedule
  (``get_learning_rate``) and the iteration bookkeeping of ``train.py``;
* :mod:`kbind.train.max_change` -- Kaldi's ``UpdateNnetWithMaxChange``
  (per-component and global max-change), L2 as ``ApplyL2Regularization``,
  and :class:`MaxChangeStep` that applies any torch optimizer's step under
  those limits (NG-SGD preconditions the gradients before, inside the layers:
  :class:`kbind.nn.NaturalGradientLinear`);
* :mod:`kbind.train.optimizer` -- the optimizer config, SGD / Adam over
  Kaldi's per-component learning-rate factors (Kaldi's momentum convention),
  and :func:`update_after_backward`, the step every trainer takes after its
  backward pass (L2, max-change, batch-norm stats, orthonormal constraint);
* :mod:`kbind.train.priors` -- label priors (``ali_train_pdf.counts``) for
  decoding CE models;
* :mod:`kbind.train.diagnostics` -- the held-out (valid) and train-diagnostic
  utterances, one draw for every trainer, and the frame of ``compute_prob``;
* :mod:`kbind.train.checkpoint` -- atomic checkpoints with every RNG state,
  for exact resumption, and the trainers' ``ckpt-<step>.pt`` bookkeeping
  (data position, pruning, resuming);
* :mod:`kbind.train.logging` -- Kaldi-style objective lines and a metrics
  log (TensorBoard, or JSONL when TensorBoard is not installed).
"""

from .checkpoint import (atomic_save, capture_rng_state, latest_checkpoint, load_checkpoint,
                         locate_step, restore_rng_state, resume_training, save_checkpoint,
                         save_training_checkpoint, seed_all)
from .diagnostics import HeldOutSplit, evaluating, log_compute_prob, split_held_out
from .logging import MetricsWriter, ObjfAccumulator, log_to_file, progress_bar
from .max_change import MaxChangeStats, MaxChangeStep, add_l2_to_grads, apply_max_change
from .optimizer import OptimConfig, make_optimizer, start_iteration, update_after_backward
from .schedule import LearningRateSchedule, get_learning_rate

__all__ = [
    "get_learning_rate", "LearningRateSchedule",
    "apply_max_change", "MaxChangeStats", "MaxChangeStep", "add_l2_to_grads",
    "OptimConfig", "make_optimizer", "start_iteration", "update_after_backward",
    "atomic_save", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
    "capture_rng_state", "restore_rng_state", "seed_all", "locate_step",
    "save_training_checkpoint", "resume_training",
    "MetricsWriter", "ObjfAccumulator", "log_to_file", "progress_bar",
    "HeldOutSplit", "split_held_out", "evaluating", "log_compute_prob",
]
