"""The run folder of :func:`flowvae.train.fit`: which folder a run may write into, and how its
files are written so that the folder always agrees with itself.

* :func:`prepare_out_dir` is the one rule of the CLI and the examples: a folder that holds
  files is refused unless the run resumes from it (``--resume``) or replaces it
  (``--overwrite``);
* :func:`write_atomically` writes a file through a temporary file and a rename, so a crash
  leaves the old file or the new one, and turns an OS error (disk full, read-only folder, a
  file where a folder should be) into one :class:`RunDirectoryError` line naming the path and
  the fix, with no temporary file left behind;
* :func:`write_metrics` writes ``metrics.jsonl`` and ``metrics.csv`` whole from a history:
  ``fit`` calls it after each checkpoint and when it resumes, with the checkpoint's history,
  so that after any crash and resume there is exactly one row per finished epoch.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
from typing import Dict, List, Optional, Sequence

from flowvae.train.config import CHECKPOINT

__all__ = ["METRICS_FILES", "OUT_DIR_FLAGS", "RUN_FILES", "RunDirectoryError", "add_out_dir_flags",
           "prepare_out_dir", "write_atomically", "write_metrics"]

#: the metrics files ``fit`` writes in its ``out_dir``
METRICS_FILES = ("metrics.jsonl", "metrics.csv")
#: every file a run writes in its folder (``run.json`` by the CLI); ``--overwrite`` removes them
RUN_FILES = (CHECKPOINT, *METRICS_FILES, "run.json")


#: the names of :func:`add_out_dir_flags`' options (an example's ``Config`` fields)
OUT_DIR_FLAGS = ("resume", "overwrite")


class RunDirectoryError(OSError):
    """A run folder or one of its files cannot be used; the message is one line naming the
    path and the fix (``errno`` keeps the OS error's number)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


_FIXES = {
    errno.ENOSPC: "the disk is full: free some space or choose another folder",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another folder",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
    errno.ENOTDIR: "a file stands where a folder should be: choose another folder or move it",
    errno.EEXIST: "a file stands where a folder should be: choose another folder or move it",
    errno.EISDIR: "a folder stands where the file should be: move it away",
}


def run_directory_error(path: str, err: OSError) -> RunDirectoryError:
    """The one-line :class:`RunDirectoryError` of the OS error ``err`` met writing ``path``."""
    fix = _FIXES.get(err.errno, err.strerror or str(err))
    return RunDirectoryError(err.errno, f"cannot write {path}: {fix}")


def make_dir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, with :class:`RunDirectoryError` for OS errors."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirectoryError(errno.ENOTDIR, f"cannot write to {path}: it is a file, not a "
                                               "folder; choose another folder or move it")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise run_directory_error(path, err) from None


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``: to ``path.tmp``, flushed to the disk, then renamed over
    ``path``. On any OS error the temporary file is removed and a :class:`RunDirectoryError`
    names ``path`` and the fix; ``path`` is left as it was."""
    tmp = f"{path}.tmp"
    kill = _kill_point(path)
    try:
        with open(tmp, "wb") as f:
            if kill == "mid":  # half the file on the disk, then killed
                f.write(data[: len(data) // 2])
                f.flush()
                _die()
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if kill == "written":
            _die()
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.remove(tmp)
        except OSError:
            pass  # never created, or the folder itself is unusable
        raise run_directory_error(path, err) from None
    if kill == "renamed":
        _die()


#: test-only fault injection (``tests/test_fault_injection.py``): ``NAME:N:STAGE`` kills the
#: process with SIGKILL at the N-th write of a file named NAME in this process, at STAGE:
#: ``mid`` (half of the temporary file written), ``written`` (the temporary file complete, not
#: renamed) or ``renamed`` (the file in place, nothing after it written)
KILL_AT_ENV = "FLOWVAE_TEST_KILL_AT"
_WRITES: Dict[str, int] = {}


def _kill_point(path: str) -> Optional[str]:
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return None
    name = os.path.basename(path)
    _WRITES[name] = _WRITES.get(name, 0) + 1
    target, count, stage = spec.split(":")
    return stage if (name, _WRITES[name]) == (target, int(count)) else None


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def write_metrics(out_dir: str, history: Sequence[Dict[str, float]]) -> None:
    """Write ``out_dir/metrics.jsonl`` (one JSON object per epoch) and ``out_dir/metrics.csv``
    (a header, one row per epoch) whole from ``history``, each atomically."""
    lines = "".join(json.dumps(row) + "\n" for row in history)
    write_atomically(os.path.join(out_dir, METRICS_FILES[0]), lines.encode())
    fields: List[str] = []
    for row in history:  # every column, in the order they first appear
        fields += [key for key in row if key not in fields]
    text = io.StringIO(newline="")
    if history:
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
    write_atomically(os.path.join(out_dir, METRICS_FILES[1]), text.getvalue().encode())


def prepare_out_dir(out_dir: str, resume: bool = False, overwrite: bool = False) -> bool:
    """The rule of the run folder ``out_dir``, shared by ``flowvae train`` and the examples
    (which apply it to each run's folder, so that runs in parallel can share an ``--out``):

    * ``resume``: continue the run in ``out_dir`` if it has a checkpoint (else start it);
    * ``overwrite``: the files runs write (:data:`RUN_FILES`), in ``out_dir`` and its
      subfolders, are removed first; other files are left;
    * neither: ``out_dir`` must be missing or empty.

    The folder is created. Returns whether ``fit`` should resume (``resume`` and a checkpoint
    exists). Raises :class:`RunDirectoryError` (one line, naming the flag that fixes it)
    otherwise; ``resume`` and ``overwrite`` together are a ``ValueError``.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: resume a run, or "
                         "start it again")
    make_dir(out_dir)
    if resume:
        return os.path.isfile(os.path.join(out_dir, CHECKPOINT))
    if overwrite:
        doomed = set(RUN_FILES) | {name + ".tmp" for name in RUN_FILES}
        for folder, _, names in os.walk(out_dir):
            for name in doomed.intersection(names):
                os.remove(os.path.join(folder, name))
        return False
    held = sorted(os.listdir(out_dir))
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise RunDirectoryError(
            errno.EEXIST, f"{out_dir} already holds files ({shown}): pass --resume to continue "
                          "its run, --overwrite to replace it, or choose another folder")
    return False


def add_out_dir_flags(parser) -> None:
    """Add ``--resume`` and ``--overwrite`` (the rule of :func:`prepare_out_dir`) to the
    ``argparse`` parser of a script that writes a run folder; they become ``resume`` and
    ``overwrite`` booleans."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoints")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in an --out that holds a run, replacing its files "
                             "(without --resume or --overwrite, an --out holding files is "
                             "refused)")
