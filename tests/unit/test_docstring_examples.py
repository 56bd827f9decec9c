"""The examples in the docstrings of the computation packages run and give what they show."""

import doctest
import importlib
import pkgutil

import pytest

import agents
import roadnet
import schemas
import simulator

MODULES = sorted(
    f"{pkg.__name__}.{m.name}"
    for pkg in (agents, roadnet, schemas, simulator)
    for m in pkgutil.iter_modules(pkg.__path__)
    if m.name != "__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
