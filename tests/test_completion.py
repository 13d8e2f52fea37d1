"""Shell completion through argcomplete (the [completion] extra; the tests
install it): the protocol both shells use, and bash end to end."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mount_fixtures import build_archive

BIN = Path(sys.executable).parent


def complete(line, cwd, shell="bash"):
    """What archfs answers a shell asking to complete ``line``."""
    out = Path(cwd) / "completions.out"
    env = dict(os.environ, _ARGCOMPLETE="1", _ARGCOMPLETE_SHELL=shell,
               _ARGCOMPLETE_SUPPRESS_SPACE="1", _ARGCOMPLETE_IFS="\n", COMP_LINE=line,
               COMP_POINT=str(len(line)), _ARGCOMPLETE_STDOUT_FILENAME=str(out))
    result = subprocess.run([BIN / "archfs"], env=env, cwd=cwd, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return out.read_text().split("\n") if out.read_text() else []


def test_subcommands_flags_options_and_files(tmp_path):
    archive = build_archive("zip", tmp_path)
    assert complete("archfs u", tmp_path) == ["unmount", "umount"]
    assert complete("archfs info --j", tmp_path) == ["--json"]
    assert complete("archfs mount -o ro,comm", tmp_path) == ["ro,commit_interval="]
    names = complete("archfs mount -o pass", tmp_path)
    assert names == ["password=", "password_file="]
    assert "noexec" in complete("archfs mount -o noe", tmp_path)
    assert complete("archfs ls arch", tmp_path) == [archive.name]


def test_members_inside_the_archive(tmp_path):
    build_archive("zip", tmp_path)
    assert complete("archfs cat archive.zip photos/2024/n", tmp_path) == [
        "photos/2024/notes.txt"]
    assert complete("archfs ls archive.zip ph", tmp_path) == ["photos/"]
    assert complete("archfs cat nosuch.zip ph", tmp_path) == []      # quiet, no traceback


def test_zsh_gets_descriptions(tmp_path):
    assert complete("archfs inf", tmp_path, shell="zsh") == [
        "info:describe ARCHIVE: format, members, sizes, dead space, encryption"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_through_the_registered_function(tmp_path):
    build_archive("zip", tmp_path)
    script = (
        'eval "$(register-python-argcomplete archfs)"\n'
        'COMP_LINE="archfs cat archive.zip photos/2024/s"; COMP_POINT=${#COMP_LINE}\n'
        'COMP_WORDS=(archfs cat archive.zip photos/2024/s); COMP_CWORD=3\n'
        '_python_argcomplete archfs\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["photos/2024/snow.jpg"]
