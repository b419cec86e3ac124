"""The ``kaldi`` fixture (tests/conftest.py): a test that compares with Kaldi
fails when the Kaldi build it is given does not run, and is skipped only when
there is no shared folder at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KALDI_TEST = "tests/io/test_matrix.py::test_compression_bytes_equal_kaldis_copy_feats"


def _pytest(env_changes: dict) -> subprocess.CompletedProcess:
    # outside CI (without CI set): in CI every skip but "no GPU" is a failure
    env = {k: v for k, v in os.environ.items()
           if k not in ("KALDI_ROOT", "KBIND_SHARED", "CI")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rs", KALDI_TEST], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_kaldi_build_that_does_not_run_fails_the_test(tmp_path):
    broken = tmp_path / "kaldi"
    (broken / "src" / "bin").mkdir(parents=True)
    prog = broken / "src" / "bin" / "copy-int-vector"
    prog.write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
    prog.chmod(0o755)
    r = _pytest({"KALDI_ROOT": str(broken)})
    # a failing fixture is reported as an error of each test using it: not passed, not skipped
    summary = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 1 and summary.startswith("7 errors in"), r.stdout[-2000:]
    assert "exited with 127" in r.stdout


def test_no_shared_folder_skips_the_test(tmp_path):
    r = _pytest({"KBIND_SHARED": str(tmp_path / "no_shared")})
    summary = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0 and summary.startswith("7 skipped in"), r.stdout[-2000:]
    assert "no shared folder" in r.stdout
