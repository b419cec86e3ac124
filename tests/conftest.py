"""Shared pytest fixtures: where the Kaldi golden files live."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_shared() -> Path:
    """The ``shared`` folder beside the checkout (fixtures, docs): ``$KBIND_SHARED``
    if set, else ``../shared``; a clone of a local checkout (``git clone
    /work/main /tmp/x``, as a fresh-clone CI check makes) uses its origin's
    ``../shared``."""
    env = os.environ.get("KBIND_SHARED")
    if env:
        return Path(env)
    default = REPO_ROOT.parent / "shared"
    if default.is_dir():
        return default
    try:
        url = subprocess.run(["git", "-C", str(REPO_ROOT), "remote", "get-url", "origin"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        url = ""
    if url.startswith("file://"):
        url = url[len("file://"):]
    if url and os.path.isabs(url):
        origin_shared = Path(url).parent / "shared"
        if origin_shared.is_dir():
            return origin_shared
    return default


SHARED = find_shared()


@pytest.fixture(scope="session")
def kaldi_io_dir() -> Path:
    """``shared/fixtures/kaldi-io``: files written by a real Kaldi build."""
    path = SHARED / "fixtures" / "kaldi-io"
    if not path.is_dir():
        pytest.fail(f"Kaldi I/O fixtures not found at {path} (set KBIND_SHARED)")
    return path


@pytest.fixture(scope="session")
def kaldi_chain_dir() -> Path:
    """``shared/fixtures/kaldi``: chain / NG-SGD golden cases."""
    path = SHARED / "fixtures" / "kaldi"
    if not path.is_dir():
        pytest.fail(f"Kaldi chain fixtures not found at {path} (set KBIND_SHARED)")
    return path


@pytest.fixture
def scp_copy(tmp_path, kaldi_io_dir):
    """Copy of a fixture .scp with FIXTURE_DIR replaced by the real folder."""

    def make(name: str) -> Path:
        text = (kaldi_io_dir / name).read_text().replace("FIXTURE_DIR", str(kaldi_io_dir))
        out = tmp_path / name
        out.write_text(text)
        return out

    return make
