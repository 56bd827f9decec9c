"""The examples in the docstrings of the computation packages run and give what they show."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import agents
import roadnet
import schemas
import simulator

# modules whose source holds an example (read as text: nothing is imported to collect them)
MODULES = sorted(
    f"{pkg.__name__}.{m.name}"
    for pkg in (agents, roadnet, schemas, simulator)
    for m in pkgutil.iter_modules(pkg.__path__)
    if (src := Path(pkg.__path__[0]) / f"{m.name}.py").is_file() and ">>> " in src.read_text(encoding="utf-8")
)


def test_some_modules_have_examples() -> None:
    assert len(MODULES) >= 5


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"no example found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
