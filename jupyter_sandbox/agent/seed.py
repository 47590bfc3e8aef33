"""Folders the image prepared (matplotlib's font list, jedi's caches) copied into the home.

The root filesystem of a sandbox is read-only, so these folders live in the home instead (the host
points MPLCONFIGDIR and XDG_CACHE_HOME there). The first start copies what the image built, so that
the first plot and the first Tab completion do not build them again; later starts find them there.
"""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger("jupyter_sandbox_agent")


def seed(pairs: list[list[str]]) -> None:
    """Copy each (image folder, home folder) pair whose home folder does not exist yet."""
    for source, target in pairs:
        if os.path.lexists(target) or not os.path.isdir(source):
            continue
        partial = f"{target}.seeding-{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copytree(source, partial, symlinks=True)
            os.rename(partial, target)
        except OSError as exc:  # a full home, say: the programs build their caches themselves
            log.warning("could not copy %s to %s: %s", source, target, exc)
            shutil.rmtree(partial, ignore_errors=True)
