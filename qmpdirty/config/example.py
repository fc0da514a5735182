"""The example configuration, written from the models (``contrib/qmpdirty.toml.example``).

Stage: config (pure text, no I/O). ``example_toml`` walks ``Config``'s sections in order
and writes every key commented out at its default, with the field's description, so
the shipped example cannot drift from the code: ``scripts/gen-config-example`` writes
the file and tests/unit/test_config_example.py fails when it differs. Lists of tables
(``[[vm]]``, ``[[device_caps]]``, ``[[hook]]``) are commented out whole: an empty
entry would not be valid. This module must not read files or know the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from qmpdirty.errors import InternalError

HEADER = """\
# qmpdirty example configuration: every key, commented out, at its default.
# Generated from the code by scripts/gen-config-example; do not edit by hand.
# Copy to /etc/qmpdirty/qmpdirty.toml and uncomment what you change; the meaning of
# every key is in README § Configuration. Unknown keys are errors.
"""


def toml_value(value: Any) -> str | None:
    """``value`` as a TOML literal; None when TOML cannot say it (an unset key)."""
    if value is None or value is PydanticUndefined:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, int | float | str | list):
        return json.dumps(value)
    raise InternalError(f"no TOML literal for {value!r}: a config default of a new type")


def section_model(field: FieldInfo) -> tuple[type[BaseModel], bool]:
    """The section's model, and whether the section is a list of tables."""
    annotation = field.annotation
    args = getattr(annotation, "__args__", (annotation,))
    model = next(a for a in args if isinstance(a, type) and issubclass(a, BaseModel))
    return model, "list" in str(annotation)


def _key_lines(name: str, field: FieldInfo) -> list[str]:
    """``# key = default`` with the field's description above it."""
    default = field.get_default(call_default_factory=True)
    lines = [f"# {line}" for line in (field.description or "").splitlines() if line]
    shown = toml_value(default)
    if field.is_required():
        lines.append(f"# {name} =            # required")
    elif shown is None:
        lines.append(f"# {name} =            # unset by default")
    else:
        lines.append(f"# {name} = {shown}")
    return lines


def _first_paragraph(doc: str | None) -> list[str]:
    """The docstring's first paragraph, lines kept, without reST's double backquotes."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return [line.strip().replace("``", "") for line in paragraph.splitlines() if line.strip()]


def example_toml(config: type[BaseModel]) -> str:
    """Every section and key of ``config`` (the ``Config`` model), commented."""
    out = [HEADER]
    for section, field in config.model_fields.items():
        model, is_list = section_model(field)
        out.append("")
        out.extend(f"# {line}" for line in _first_paragraph(model.__doc__))
        out.append(f"# [[{section}]]" if is_list else f"[{section}]")
        for name, sub in model.model_fields.items():
            out.extend(_key_lines(name, sub))
    return "\n".join(out) + "\n"
