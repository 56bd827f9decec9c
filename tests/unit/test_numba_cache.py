"""Cached numba kernels are dropped when any source of their package changes
(agents._numba_cache)."""

from pathlib import Path

from agents import _numba_cache as nc


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "caller.py").write_text("def f(): return g()\n")
    (pkg / "callee.py").write_text("def g(): return 1\n")
    return pkg


def _cached(pkg: Path) -> list[str]:
    for name in ("caller.f-1.py311.nbi", "caller.f-1.py311.1.nbc", "callee.g-1.py311.nbi"):
        (pkg / "__pycache__" / name).write_bytes(b"x")
    (pkg / "__pycache__" / "caller.cpython-311.pyc").write_bytes(b"pyc")
    return sorted(p.name for p in (pkg / "__pycache__").iterdir())


def test_an_edit_of_another_module_drops_every_cached_kernel(tmp_path):
    pkg = _package(tmp_path)
    _cached(pkg)
    assert nc.clear_if_sources_changed(pkg)  # no stamp yet: the cache predates it
    left = sorted(p.name for p in (pkg / "__pycache__").iterdir())
    assert left == ["caller.cpython-311.pyc", nc.STAMP]
    _cached(pkg)
    assert not nc.clear_if_sources_changed(pkg)  # same sources: kept
    assert (pkg / "__pycache__" / "caller.f-1.py311.nbi").exists()
    (pkg / "callee.py").write_text("def g(): return 2\n")  # only the callee's file changes
    assert nc.clear_if_sources_changed(pkg)
    assert not list((pkg / "__pycache__").glob("*.nb[ic]"))
    assert (pkg / "__pycache__" / nc.STAMP).read_text().strip() == nc.sources_digest(pkg)


def test_the_digest_follows_names_and_bytes(tmp_path):
    pkg = _package(tmp_path)
    d0 = nc.sources_digest(pkg)
    (pkg / "callee.py").rename(pkg / "other.py")
    assert nc.sources_digest(pkg) != d0
    (pkg / "other.py").rename(pkg / "callee.py")
    assert nc.sources_digest(pkg) == d0


def test_a_cache_that_cannot_be_written_is_left_alone(tmp_path, monkeypatch):
    pkg = _package(tmp_path)
    _cached(pkg)

    def refuse(self, *a, **k):
        raise PermissionError("read-only")

    monkeypatch.setattr(Path, "unlink", refuse)
    assert not nc.clear_if_sources_changed(pkg)  # no error; nothing could be removed
    assert (pkg / "__pycache__" / "caller.f-1.py311.nbi").exists()


def test_the_agents_package_is_stamped_with_its_sources():
    import agents

    pkg = Path(agents.__file__).resolve().parent
    stamp = pkg / "__pycache__" / nc.STAMP
    assert stamp.read_text().strip() == nc.sources_digest(pkg)
