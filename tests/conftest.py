"""Shared pytest fixtures (where the Kaldi golden files and the Kaldi build live)
and the CI skip check.

In CI (the environment variable ``CI`` set, as ``.ci/run`` does) the only skip
allowed is a missing GPU (:data:`GPU_SKIP_REASON`, used by :data:`requires_gpu`):
any other skip -- a test's own ``pytest.skip``, a ``skipif``, or a module-level
``importorskip`` -- is reported as a failure, so a package or tool CI is supposed
to have cannot silently switch tests off.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

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

GPU_SKIP_REASON = "no GPU"
"""The one skip reason allowed in CI."""

requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=GPU_SKIP_REASON)
"""Mark a test that needs a CUDA device."""


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _fail_skip_in_ci(report) -> None:
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if reason == GPU_SKIP_REASON:
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped in CI ({reason!r}): in CI the only skip allowed is "
                       f"{GPU_SKIP_REASON!r}; install what the test needs (Makefile) or make "
                       "the test not depend on it")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


def find_kaldi() -> Path:
    """The Kaldi build that tests and benchmarks compare kbind with:
    ``$KALDI_ROOT`` if set, else ``<shared>/kaldi`` (its programs are in
    ``src/bin``, or in ``src/*bin`` as in a Kaldi checkout)."""
    env = os.environ.get("KALDI_ROOT")
    return Path(env) if env else SHARED / "kaldi"


def kaldi_program(root: Path, name: str) -> Path:
    """The path of Kaldi program ``name`` in the build at ``root``."""
    for path in [root / "src" / "bin" / name, *sorted((root / "src").glob(f"*bin/{name}"))]:
        if path.is_file():
            return path
    raise FileNotFoundError(f"Kaldi program {name} not found under {root}/src")


@pytest.fixture(scope="session")
def kaldi():
    """Runs a program of the Kaldi build (:func:`find_kaldi`):
    ``kaldi("copy-feats", "ark:a.ark", "ark:b.ark", input=None) -> stdout bytes``;
    a non-zero exit fails the test with Kaldi's message.

    The test fails when the build is missing or does not run (a missing shared
    library, say); it is skipped only when there is no shared folder at all."""
    root = find_kaldi()
    if not os.environ.get("KALDI_ROOT") and not SHARED.is_dir():
        pytest.skip(f"no shared folder at {SHARED}, so no Kaldi build to compare with "
                    "(set KBIND_SHARED or KALDI_ROOT)")

    def run(name: str, *args: str, input: bytes | None = None) -> bytes:
        try:
            prog = kaldi_program(root, name)
        except FileNotFoundError as e:
            pytest.fail(str(e))
        r = subprocess.run([str(prog), *map(str, args)], input=input, capture_output=True)
        if r.returncode:
            pytest.fail(f"{name} {' '.join(map(str, args))} exited with {r.returncode}:\n"
                        + r.stderr.decode(errors="replace")[-2000:])
        return r.stdout

    if run("copy-int-vector", "ark,t:-", "ark,t:-", input=b"a 1 2\n") != b"a 1 2 \n":
        pytest.fail(f"the Kaldi build at {root} does not copy an int vector correctly")
    return run


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
