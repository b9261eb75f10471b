"""Outputs appear whole or not at all: write to a temporary sibling, rename on success."""

import contextlib
import os
import shutil
from pathlib import Path

from ..errors import HsanomalyError


def check_writable(path):
    """Fail early, with one line, when ``path`` cannot be created."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise HsanomalyError(f"{path}: output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise HsanomalyError(f"{path}: output directory {parent} is not writable")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    check_writable(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
