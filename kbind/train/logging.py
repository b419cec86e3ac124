"""Training logs: Kaldi-style objective lines and a metrics log.

:class:`ObjfAccumulator` sums :class:`kbind.chain.ChainStats` over
minibatches and prints what Kaldi's ``nnet3-chain-train`` /
``nnet3-chain-compute-prob`` print::

    Average objective function for 'output' for minibatches 0-9 is -0.2345 over 3200 frames.
    Overall average objective function for 'output' is -0.2345 + -0.0012 = -0.2357 over 32000 frames.
    Overall log-probability for 'output' is -0.2345 per frame, over 3200 frames.

:class:`MetricsWriter` writes scalars to TensorBoard (``torch.utils.tensorboard``)
when the ``tensorboard`` package is installed, and always to
``<dir>/metrics.jsonl`` (one JSON object per line: tag, value, step, time),
which is the only log when TensorBoard is missing (a warning says so).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

__all__ = ["ObjfAccumulator", "MetricsWriter"]

log = logging.getLogger(__name__)


class ObjfAccumulator:
    """Sums of objective, l2 term, xent objective and weight (frames)."""

    def __init__(self, name: str = "output"):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.objf = self.l2 = self.xent = self.weight = 0.0
        self.num_minibatches = 0
        self.has_xent = False

    def add(self, stats) -> None:
        self.objf += stats.objf
        self.l2 += stats.l2_term
        self.weight += stats.weight
        if stats.xent_objf is not None:
            self.xent += stats.xent_objf
            self.has_xent = True
        self.num_minibatches += 1

    @property
    def objf_per_frame(self) -> float:
        return self.objf / self.weight if self.weight else float("nan")

    @property
    def l2_per_frame(self) -> float:
        return self.l2 / self.weight if self.weight else float("nan")

    @property
    def xent_per_frame(self) -> float:
        return self.xent / self.weight if self.weight and self.has_xent else float("nan")

    def _objf_text(self) -> str:
        if self.l2 != 0.0:
            return (f"{self.objf_per_frame:.6g} + {self.l2_per_frame:.6g} = "
                    f"{self.objf_per_frame + self.l2_per_frame:.6g}")
        return f"{self.objf_per_frame:.6g}"

    def train_lines(self, first: Optional[int] = None, last: Optional[int] = None,
                    overall: bool = False) -> List[str]:
        """nnet3-chain-train's lines (per range of minibatches or overall)."""
        if overall:
            lines = [f"Overall average objective function for '{self.name}' is "
                     f"{self._objf_text()} over {self.weight:g} frames."]
            if self.has_xent:
                lines.append(f"Overall average objective function for '{self.name}-xent' is "
                             f"{self.xent_per_frame:.6g} over {self.weight:g} frames.")
            return lines
        return [f"Average objective function for '{self.name}' for minibatches {first}-{last} "
                f"is {self._objf_text()} over {self.weight:g} frames."]

    def compute_prob_lines(self) -> List[str]:
        """nnet3-chain-compute-prob's lines."""
        if self.l2 != 0.0:
            lines = [f"Overall log-probability for '{self.name}' is {self.objf_per_frame:.6g} + "
                     f"{self.l2_per_frame:.6g} = {self.objf_per_frame + self.l2_per_frame:.6g} "
                     f"per frame, over {self.weight:g} frames."]
        else:
            lines = [f"Overall log-probability for '{self.name}' is {self.objf_per_frame:.6g} "
                     f"per frame, over {self.weight:g} frames."]
        if self.has_xent:
            lines.append(f"Overall log-probability for '{self.name}-xent' is "
                         f"{self.xent_per_frame:.6g} per frame, over {self.weight:g} frames.")
        return lines

    def as_dict(self) -> Dict[str, float]:
        d = {"objf": self.objf_per_frame, "l2": self.l2_per_frame, "frames": self.weight}
        if self.has_xent:
            d["xent"] = self.xent_per_frame
        return d


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        return True
    except Exception:
        return False


class MetricsWriter:
    """Scalars to ``<dir>/metrics.jsonl`` and, if installed, TensorBoard."""

    def __init__(self, log_dir, use_tensorboard: bool = True):
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.dir / "metrics.jsonl", "a")
        self._tb = None
        if use_tensorboard:
            if _tensorboard_available():
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            else:
                log.warning("tensorboard is not installed: metrics go to %s only",
                            self.dir / "metrics.jsonl")

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._jsonl.write(json.dumps({"tag": tag, "value": float(value), "step": int(step),
                                      "time": round(time.time(), 3)}) + "\n")
        if self._tb is not None:
            self._tb.add_scalar(tag, value, step)

    def scalars(self, values: Dict[str, float], step: int, prefix: str = "") -> None:
        for k, v in values.items():
            self.scalar(prefix + k, v, step)

    def flush(self) -> None:
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def progress_bar(enabled: bool, total: int, initial: int = 0):
    """A tqdm bar of ``total`` minibatches on stderr (None when not ``enabled``)."""
    if not enabled:
        return None
    import sys

    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="train", unit="mb", dynamic_ncols=True,
                file=sys.stderr)


class log_to_file:
    """``with log_to_file("train_ce", dir / "log" / "train.log"):`` -- also write
    that logger's records, and the kbind library's (e.g. an update not applied,
    an eg skipped), to a file (Kaldi's per-job logs), and make sure something
    prints them to stderr when the program has no logging set up."""

    def __init__(self, logger: str, path):
        self.loggers = [logging.getLogger(logger), logging.getLogger("kbind")]
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO,
                                format="%(asctime)s %(name)s %(levelname)s: %(message)s")
        self.handler = logging.FileHandler(self.path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: "
                                                    "%(message)s"))
        for logger in self.loggers:
            logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        for logger in self.loggers:
            logger.removeHandler(self.handler)
        self.handler.close()
