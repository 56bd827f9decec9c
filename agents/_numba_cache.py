"""numba's on-disk kernels of a package, dropped when any of its sources changes.

numba keys a cached kernel on its own file's modification time and size only. A kernel that
calls another module's kernel (``map_matching._log_transitions_table`` calls
``_routes._table_distances``) is cached with that callee compiled in, so after an edit of the
callee's file alone the cached caller silently kept the old callee: in a working tree, or in
an install upgraded in place whose ``__pycache__`` stays. The package's caches are therefore
tied to one fingerprint of all its sources (``docs/decisions.md``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["STAMP", "clear_if_sources_changed", "sources_digest"]

#: the file in ``__pycache__`` that names the sources the cached kernels were built from
STAMP = "numba-sources.sha256"


def sources_digest(package_dir: Path) -> str:
    """SHA-256 over the names and bytes of the package's ``*.py`` files (not recursive)."""
    h = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def clear_if_sources_changed(package_dir: Path) -> bool:
    """Delete ``package_dir/__pycache__/*.nbi`` and ``*.nbc`` unless the stamp there names
    the current sources, then write the stamp; True if anything was deleted.

    numba then compiles each kernel again at its first call and caches it anew. A cache
    that cannot be written (a read-only install) is left as it is.
    """
    digest = sources_digest(package_dir)
    cache = package_dir / "__pycache__"
    stamp = cache / STAMP
    try:
        if stamp.read_text().strip() == digest:
            return False
    except OSError:
        pass  # no stamp yet: whatever is cached predates it
    removed = False
    try:
        for path in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            path.unlink(missing_ok=True)
            removed = True
        cache.mkdir(exist_ok=True)
        tmp = cache / f"{STAMP}.{os.getpid()}.tmp"
        tmp.write_text(digest + "\n")
        tmp.replace(stamp)  # atomic: a second process starting at once reads one or the other
    except OSError:
        pass
    return removed
