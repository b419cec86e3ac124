"""The CI skip check of ``tests/conftest.py``: with ``CI`` set, every skip but
"no GPU" fails; without it, skips stay skips."""

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

SKIPPING = '''
import pytest
from tests.conftest import requires_gpu

def test_own_skip():
    pytest.skip("a tool is missing")

@pytest.mark.skipif(True, reason="a package is missing")
def test_skipif():
    pass

@requires_gpu
def test_gpu():
    pass

def test_passes():
    pass
'''

IMPORTORSKIP = '''
import pytest
pytest.importorskip("kbind_no_such_package")

def test_never_collected():
    pass
'''


def _run(tmp_path, source, ci):
    path = tmp_path / "test_demo.py"
    path.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if ci:
        env["CI"] = "1"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "tests.conftest",
                        "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(path)],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def test_skips_fail_in_ci_except_no_gpu(tmp_path):
    import torch
    rc, out = _run(tmp_path, SKIPPING, ci=True)
    assert rc != 0, out
    assert "skipped in CI ('a tool is missing')" in out
    assert "skipped in CI ('a package is missing')" in out
    assert "1 failed" in out and "1 error" in out
    if not torch.cuda.is_available():
        assert "1 skipped" in out and "no GPU" in out


def test_skips_are_skips_outside_ci(tmp_path):
    rc, out = _run(tmp_path, SKIPPING, ci=False)
    assert rc == 0, out
    assert "failed" not in out and "error" not in out


def test_module_importorskip_fails_in_ci(tmp_path):
    rc, out = _run(tmp_path, IMPORTORSKIP, ci=True)
    assert rc != 0, out
    assert "skipped in CI" in out and "kbind_no_such_package" in out
    rc, out = _run(tmp_path, IMPORTORSKIP, ci=False)
    assert rc == 5 and "1 skipped" in out, out     # 5: no test collected, none failed
