"""The CI rule: with ARCHFS_CI=1 a skipped test fails the run, and says why.

Each case runs a separate pytest on a small generated test file with the
rule loaded as a plugin (as conftest.py loads it)."""

import os
import subprocess
import sys
import textwrap

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

SAMPLE = textwrap.dedent("""
    import pytest

    def test_passes():
        assert 1 + 1 == 2

    {extra}
""")

SKIPPING = """
def test_needs_widget():
    pytest.skip("no widget on this machine")
"""

XFAILING = """
@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert False
"""


def run_pytest(tmp_path, extra, ci, files=None):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_sample.py").write_text(SAMPLE.format(extra=extra))
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "ARCHFS_CI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS_DIR, env.get("PYTHONPATH")]))
    if ci:
        env["ARCHFS_CI"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "ci_skip_rule", "-p", "no:cacheprovider",
         "-q", str(tmp_path)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)


def test_skip_fails_the_run_in_ci(tmp_path):
    result = run_pytest(tmp_path, SKIPPING, ci=True)
    assert result.returncode == 1, result.stdout
    assert "skipped tests fail the run" in result.stdout
    assert "test_sample.py::test_needs_widget: no widget on this machine" in result.stdout


def test_skip_is_fine_outside_ci(tmp_path):
    result = run_pytest(tmp_path, SKIPPING, ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped" in result.stdout


def test_module_skip_fails_the_run_in_ci(tmp_path):
    module = "import pytest\npytest.importorskip('no_such_module_for_archfs')\n" \
             "def test_never():\n    pass\n"
    result = run_pytest(tmp_path, "", ci=True, files={"test_optional.py": module})
    assert result.returncode == 1, result.stdout
    assert "test_optional.py" in result.stdout and "no_such_module_for_archfs" in result.stdout


def test_xfail_is_not_a_skip(tmp_path):
    result = run_pytest(tmp_path, XFAILING, ci=True)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 xfailed" in result.stdout


def test_a_failure_keeps_its_exit_status(tmp_path):
    result = run_pytest(tmp_path, SKIPPING + "\ndef test_fails():\n    assert False\n", ci=True)
    assert result.returncode == 1
    assert "1 failed" in result.stdout and "no widget" in result.stdout
