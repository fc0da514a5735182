"""One exception tree: every exception class qmpdirty defines descends from
``QmpDirtyError``, and the tree drawn in errors.py names every one of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import qmpdirty
from qmpdirty import errors
from qmpdirty.errors import AddressError, PayloadError, QmpDirtyError

#: Not in the tree: none.
NOT_YET: set[str] = set()


def defined_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(qmpdirty.__path__, "qmpdirty."):
        if info.name == "qmpdirty.__main__":
            continue
        # The demo is not the product: its DemoError is deliberately outside the tree.
        if info.name == "qmpdirty.demo" or info.name.startswith("qmpdirty.demo."):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) \
                    and value.__module__ == info.name:
                found[f"{info.name}.{name}"] = value
    return found


def test_every_exception_is_a_qmpdirty_error() -> None:
    found = defined_exceptions()
    assert "qmpdirty.errors.SinkError" in found
    outside = {name for name, cls in found.items() if not issubclass(cls, QmpDirtyError)}
    assert outside <= NOT_YET


def drawn_parents(doc: str) -> dict[str, str]:
    """Each class of the drawing -> its parent: a ``+--`` sits one column right of
    where its parent's name starts."""
    name_at: dict[int, str] = {}
    parents = {}
    for line in doc.splitlines():
        if (root := re.fullmatch(r"( +)(QmpDirtyError)", line)) is not None:
            name_at = {len(root[1]): root[2]}
        elif (node := re.match(r"([ |]*)\+-- (\w+)", line)) is not None:
            plus = len(node[1])
            parents[node[2]] = name_at[plus - 1]
            name_at[plus + 4] = node[2]
    return parents


def test_the_drawing_is_the_tree() -> None:
    """errors.py draws each of its classes under its parent and names every other."""
    doc = errors.__doc__ or ""
    ours = {name: cls for name, cls in vars(errors).items() if inspect.isclass(cls)
            and issubclass(cls, QmpDirtyError) and cls is not QmpDirtyError}
    parents = drawn_parents(doc)
    assert set(parents) == set(ours)
    for name, parent in parents.items():
        assert parent in {base.__name__ for base in ours[name].__bases__}, name
    for name in defined_exceptions():
        assert re.search(rf"\b{name.rsplit('.', 1)[1]}\b", doc), name


def test_address_errors_are_still_value_errors() -> None:
    """Config validators (pydantic) turn a ValueError into a problem of its key."""
    assert issubclass(AddressError, ValueError)
    assert not issubclass(PayloadError, ValueError)
