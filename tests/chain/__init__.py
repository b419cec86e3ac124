"""Tests of kbind.chain (LF-MMI objective) against Kaldi's golden cases.

Shared helpers for the chain tests live here."""

import json

import numpy as np
import torch

DEN_CASES = ["tiny_den_S4_T25", "medium_den_S4_T34"]
CHAIN_CASES = ["tiny_chain_S3_T15", "medium_chain_S4_T34", "tiny_chain_unconstrained_S3_T15",
               "tiny_chain_e2e_S3_T15"]


def load_case(kaldi_chain_dir, name):
    d = kaldi_chain_dir / name
    cj = json.loads((d / "case.json").read_text())
    return d, cj, cj["input"]["S"], cj["input"]["T"], cj["input"]["D"]


def from_kaldi(a, S, T, D):
    """(S*T, D) Kaldi layout (row t*S+s) -> (S, T, D) tensor."""
    return torch.from_numpy(np.asarray(a)).reshape(T, S, D).transpose(0, 1).contiguous()


def to_kaldi(x):
    """(S, T, D) -> (S*T, D) numpy in Kaldi's layout."""
    S, T, D = x.shape
    return x.detach().transpose(0, 1).reshape(S * T, D).cpu().numpy()


def rel(a, b):
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-30)


def fd_check(f, x, grad, num_dirs=5, eps=1e-4, seed=0):
    """Central finite differences of scalar f at x along random directions;
    returns the relative error ||pred - obs|| / ||pred||."""
    g = torch.Generator().manual_seed(seed)
    pred, obs = [], []
    for _ in range(num_dirs):
        d = torch.randn(x.shape, generator=g, dtype=torch.float64)
        pred.append(float((grad * d).sum()))
        obs.append((float(f(x + eps * d)) - float(f(x - eps * d))) / (2 * eps))
    pred, obs = np.array(pred), np.array(obs)
    return np.linalg.norm(pred - obs) / np.linalg.norm(pred)


def assert_close(a, b, rtol=1.3e-6, atol=1e-5):
    """Like torch.testing.assert_close (which is slow to import)."""
    a = torch.as_tensor(a).detach().cpu()
    b = torch.as_tensor(b).detach().cpu().to(a.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs()
    bound = atol + rtol * b.abs()
    assert bool((err <= bound).all()), f"max abs err {float(err.max()):.3g}"


def one_thread():
    """Generator for an autouse fixture: run with one intra-op thread (the
    shared 2-core machine is oversubscribed; multi-threaded small ops crawl)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
