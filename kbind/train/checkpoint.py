"""Atomic training checkpoints that resume *exactly*.

A checkpoint is one ``torch.save`` dict written to ``<name>.tmp`` in the
target folder, flushed and ``fsync``-ed, renamed over the target
(``os.replace``, atomic on POSIX) and the folder ``fsync``-ed, so a crash
leaves either the old or the new file, never a torn one.

For a resumed run to continue exactly as if uninterrupted, a trainer stores
everything that influences later steps: model (parameters *and* buffers such
as batch-norm statistics), optimizer (momentum buffers), scheduler position,
every random generator (Python's ``random``, NumPy's global generator,
torch's CPU and CUDA generators, and any private ``random.Random`` objects
such as the chain loss's out-of-range draw and the orthonormal-constraint
draw) and the data position (epoch, minibatch index within the epoch; the
minibatch plan is a pure function of the seed and the epoch).

A trainer numbers its minibatches over the whole run (epochs concatenated),
writes ``<dir>/ckpt-<step>.pt`` after ``step`` minibatches with
:func:`save_training_checkpoint` (which keeps the newest ``keep`` of them)
and resumes from the newest with :func:`resume_training`; :func:`locate_step`
turns a step into the data position (epoch, minibatch index in the epoch).
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["atomic_save", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "capture_rng_state", "restore_rng_state", "locate_step", "save_training_checkpoint",
           "resume_training"]

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (a trainer's start)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state(**generators: random.Random) -> Dict[str, Any]:
    """States of the global generators plus named ``random.Random`` objects."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "named": {k: g.getstate() for k, g in generators.items() if g is not None},
    }
    return state


def restore_rng_state(state: Dict[str, Any], **generators: random.Random) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    named = state.get("named", {})
    for k, g in generators.items():
        if g is not None and k in named:
            g.setstate(named[k])


def save_checkpoint(path, *, model: torch.nn.Module, optimizer=None, scheduler=None,
                    position: Optional[Dict[str, int]] = None, rng: Optional[Dict] = None,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write a checkpoint (see the module doc for what a trainer must pass)."""
    obj = {
        "format": "kbind-checkpoint-1",
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": (scheduler.state_dict() if hasattr(scheduler, "state_dict")
                      else scheduler),
        "position": dict(position or {}),
        "rng": rng if rng is not None else capture_rng_state(),
        "extra": extra or {},
    }
    return atomic_save(obj, path)


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    obj = torch.load(str(path), map_location=map_location, weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != "kbind-checkpoint-1":
        raise ValueError(f"{path} is not a kbind checkpoint")
    return obj


def _numbered_checkpoints(folder) -> list:
    """``ckpt-<n>.pt`` files of ``folder``, by increasing ``n``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = re.match(r"^ckpt-(\d+)\.pt$", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder) -> Optional[Path]:
    """The checkpoint with the highest number in ``folder`` (or None)."""
    ckpts = _numbered_checkpoints(folder)
    return ckpts[-1] if ckpts else None


def locate_step(step: int, epoch_sizes: Sequence[int]) -> Tuple[int, int]:
    """``(epoch, minibatch index in the epoch)`` of the run's minibatch ``step``
    (epochs of ``epoch_sizes`` minibatches, concatenated); ``(len(epoch_sizes),
    0)`` once every epoch is done."""
    for epoch, size in enumerate(epoch_sizes):
        if step < size:
            return epoch, step
        step -= size
    return len(epoch_sizes), 0


def save_training_checkpoint(folder, step: int, epoch_sizes: Sequence[int], keep: int, *,
                             model: torch.nn.Module, optimizer, num_iters: int,
                             rng: Dict, extra: Optional[Dict[str, Any]] = None) -> Path:
    """``<folder>/ckpt-<step>.pt`` after ``step`` minibatches of the run, then
    delete all but the newest ``keep`` (at least 1) checkpoints."""
    folder = Path(folder)
    epoch, index = locate_step(step, epoch_sizes)
    path = save_checkpoint(folder / f"ckpt-{step}.pt", model=model, optimizer=optimizer,
                           scheduler={"num_iters": num_iters},
                           position={"step": step, "epoch": epoch, "index": index},
                           rng=rng, extra=extra)
    for old in _numbered_checkpoints(folder)[:-max(1, keep)]:
        old.unlink()
    return path


def resume_training(folder, *, model: torch.nn.Module, optimizer, num_iters: int,
                    map_location="cpu", **generators: random.Random) -> Optional[Dict[str, Any]]:
    """Load the newest checkpoint of ``folder`` into ``model``, ``optimizer``, the
    global generators and the named ones; return it (None if there is none).

    A checkpoint of a run with another number of iterations (other data or
    config) cannot resume this one exactly: that is an error."""
    path = latest_checkpoint(folder)
    if path is None:
        return None
    ck = load_checkpoint(path, map_location=map_location)
    saved = (ck.get("scheduler") or {}).get("num_iters")
    if saved != num_iters:
        raise ValueError(f"{path} is from a run of {saved} iterations, this one has "
                         f"{num_iters} (data or config changed): start in a new dir")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    restore_rng_state(ck["rng"], **generators)
    pos = ck["position"]
    log.info("resumed from %s (step %d, epoch %d, minibatch %d)", path, pos["step"],
             pos["epoch"], pos["index"])
    return ck
