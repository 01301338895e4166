"""The source distribution holds what its tests need, and builds without a setuptools warning."""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked(*folders):
    done = subprocess.run(["git", "ls-files", *folders], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return {path for path in done.stdout.splitlines() if os.path.exists(os.path.join(ROOT, path))}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_sdist_holds_the_tests_and_every_file_they_read(tmp_path):
    needed = tracked("tests", "docs", "examples", "benchmarks", "flowvae")
    # a clean copy of the checkout: setuptools would reuse an old egg-info's file list
    source = tmp_path / "source"
    for path in tracked():
        os.makedirs(source / os.path.dirname(path), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), source / path)
    build = ("import sys; from setuptools import build_meta as b; "
             "print(b.build_sdist(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-W", "always", "-c", build, str(tmp_path)],
                          cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines()
                if "Warning" in line or "deprecat" in line.lower()]
    assert not warnings, warnings  # e.g. setuptools' licence-table deprecation
    with tarfile.open(tmp_path / done.stdout.split()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = sorted(needed - names)
    assert not missing, f"tracked files the sdist leaves out: {missing[:20]}"
    assert not any("__pycache__" in name for name in names)
