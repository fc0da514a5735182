"""One exception tree: every exception class qmpdirty defines descends from
``QmpDirtyError`` (design.md § Conventions; the tree is drawn in errors.py)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import qmpdirty
from qmpdirty.errors import AddressError, PayloadError, QmpDirtyError

#: Not in the tree: none.
NOT_YET: set[str] = set()


def defined_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(qmpdirty.__path__, "qmpdirty."):
        if info.name == "qmpdirty.__main__":
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


def test_address_errors_are_still_value_errors() -> None:
    """Config validators (pydantic) turn a ValueError into a problem of its key."""
    assert issubclass(AddressError, ValueError)
    assert not issubclass(PayloadError, ValueError)
