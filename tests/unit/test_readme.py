"""The README (and the docs it links) say what the code does: the topic table lists
every topic with its retain flag and QoS, the configuration tables every key with its
default, the command list every command and exit code of ``--help``; tables are whole,
and every reference is to something a reader of the repository can open."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from qmpdirty.cli import EPILOG, build_parser
from qmpdirty.config.load import Config
from qmpdirty.telemetry.discovery import ENTITIES, HOST_ENTITIES, discovery_topic, host_messages
from qmpdirty.telemetry.render.status import VmStatus
from qmpdirty.telemetry.topics import TopicKind, Topics

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
#: User-facing documents: the README and what it links to.
DOCS = ["README.md", "docs/hooks.md", "docs/dashboards.md", "docs/systemd.md",
        "contrib/libvirt/README.md"]


def rows(text: str) -> list[list[str]]:
    """Every table row of ``text``, as its cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]


# --- form --------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS)
def test_no_table_is_cut_by_a_blank_line(doc: str) -> None:
    """B16: a blank line inside a table turns its remaining rows into plain text."""
    lines = (ROOT / doc).read_text().splitlines()
    for n in range(len(lines) - 3):
        row, blank, more, after = lines[n:n + 4]
        cut = row.startswith("|") and not blank.strip() and more.startswith("|")
        assert not (cut and not after.startswith("|---")), f"{doc}:{n + 2}: blank line in a table"


#: Things a user of the repository cannot open: internal notes, issue trackers.
INTERNAL = re.compile(r"design\.md|runtime-notes|\breference/|\bseeds/|\.\./shared|"
                      r"\b[Ii]ssue \d|\b[Ii]tem \d|\bB\d{1,2}\b")


@pytest.mark.parametrize("doc", DOCS)
def test_no_reference_to_internal_documents(doc: str) -> None:
    found = [(n, m.group()) for n, line in enumerate((ROOT / doc).read_text().splitlines(), 1)
             for m in INTERNAL.finditer(line)]
    assert found == [], f"{doc}: {found}"


#: A file or directory named in backticks or a link: ends in an extension or ``/``.
PATHISH = re.compile(r"[`(]((?:[\w.-]+/)+[\w.-]*?(?:\.(?:py|md|json|toml|conf|xml|service)|/))"
                     r"(?::\w+)?[`)]")


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_file_exists(doc: str) -> None:
    """Paths are relative to the document, the repository or the package. A path whose
    first directory is none of theirs is somewhere else (``system/qmpdirty.service``
    under /usr/lib/systemd); a lone directory (``lab/``) must exist."""
    bases = ((ROOT / doc).parent, ROOT, ROOT / "qmpdirty")
    missing = []
    for path in PATHISH.findall((ROOT / doc).read_text()):
        first = path.split("/", 1)[0]
        ours = path.rstrip("/") == first or any((b / first).is_dir() for b in bases)
        if ours and not path.startswith("/") and not any((b / path).exists() for b in bases):
            missing.append(path)
    assert missing == [], f"{doc}: {missing}"


# --- the topic table ---------------------------------------------------------------------------


def topic_table() -> dict[str, tuple[str, str, str]]:
    """Topic pattern -> (retained, QoS, payload) of the MQTT contract's table."""
    section = README.split("## MQTT contract", 1)[1].split("\n## ", 1)[0]
    return {r[0].strip("`"): (r[1], r[2], r[3]) for r in rows(section)
            if len(r) == 4 and r[0].startswith("`")}


def readme_pattern(kind: TopicKind) -> str:
    if kind.scope == "host":
        return f"<prefix>/<host>/{kind.suffix}"
    return f"…/vm/<vm>/{kind.suffix}" + ("/<EVENT>" if kind is TopicKind.EVENT else "")


@pytest.mark.parametrize("kind", list(TopicKind), ids=lambda k: k.name)
def test_every_topic_is_in_the_table_with_its_retain_flag_and_qos(kind: TopicKind) -> None:
    """B17: ``error`` was missing; every topic the code can publish is listed."""
    table = topic_table()
    assert readme_pattern(kind) in table, f"{readme_pattern(kind)} not in {list(table)}"
    retained, qos, _ = table[readme_pattern(kind)]
    assert (retained, qos) == ("yes" if kind.retain else "no", str(kind.qos))


def test_the_table_lists_nothing_else_and_home_assistant_discovery() -> None:
    table = topic_table()
    ha = "<discovery_prefix>/<component>/qmpdirty_<host>/<vm>_<entity>/config"
    ha_host = "<discovery_prefix>/<component>/qmpdirty_<host>/<entity>/config"
    assert set(table) == {readme_pattern(k) for k in TopicKind} | {ha, ha_host}
    topics = Topics.create("qmpdirty", "kvm07")
    topic = discovery_topic(topics, "web1", ENTITIES[0], "homeassistant")
    assert topic == f"homeassistant/{ENTITIES[0].component}/qmpdirty_kvm07/web1_" \
                    f"{ENTITIES[0].key}/config"
    host = host_messages(topics)[0].topic
    assert host == f"homeassistant/{HOST_ENTITIES[0].component}/qmpdirty_kvm07/" \
                   f"{HOST_ENTITIES[0].key}/config"
    assert table[ha][:2] == table[ha_host][:2] == ("yes", "1")


def test_every_vm_status_value_is_in_the_table() -> None:
    _, _, payload = topic_table()[readme_pattern(TopicKind.VM_STATUS)]
    for value in get_args(VmStatus):
        assert f"`{value}`" in payload


# --- the configuration tables ------------------------------------------------------------------


def config_keys() -> dict[str, Any]:
    """``section.key`` (``vm[].qmp`` in lists) -> the model's default."""
    keys: dict[str, Any] = {}
    for name, field in Config.model_fields.items():
        model = next(a for a in getattr(field.annotation, "__args__", (field.annotation,))
                     if isinstance(a, type) and issubclass(a, BaseModel))
        prefix = f"{name}[]." if "list" in str(field.annotation) else f"{name}."
        for key, sub in model.model_fields.items():
            keys[prefix + key] = sub.get_default(call_default_factory=True)
    return keys


def documented_defaults() -> dict[str, str]:
    """Key -> its default cell, from every ``| key | default | meaning |`` row; a row
    naming several keys gives each its part of a comma-separated default."""
    out: dict[str, str] = {}
    for cells in rows(README):
        keys = re.findall(r"`([a-z_]+(?:\[\])?\.[a-z_0-9]+)`", cells[0])
        if not keys or len(cells) != 3:
            continue
        parts = [p.strip() for p in cells[1].split(",")]
        for n, key in enumerate(keys):
            out[key] = parts[n] if len(parts) == len(keys) else cells[1]
    return out


def as_python(cell: str) -> object:
    """A default cell as a value, or ``...`` when it is prose."""
    literal = cell.strip("`").strip('"')
    if cell in ("none", "off"):
        return None
    if cell == "required":
        return PydanticUndefined
    if cell in ("true", "false"):
        return cell == "true"
    if re.fullmatch(r"-?\d+(\.\d+)?", cell):
        return float(cell)
    if cell == "`[]`":
        return []
    if re.fullmatch(r"`[a-z_]+\.[a-z_0-9]+`", cell):  # another key's value
        return ...
    if re.fullmatch(r"`[^`]*`", cell):
        return literal
    return ...


def test_every_key_is_documented_with_its_default() -> None:
    documented = documented_defaults()
    caps = README.split("`[[device_caps]]` states", 1)[1].split("```", 1)[0]
    for key, default in config_keys().items():
        if key.startswith("device_caps[]."):  # described in prose, below the table
            assert f"`{key.split('.', 1)[1]}`" in caps, key
            continue
        assert key in documented, f"{key} is not in README § Configuration"
        shown = as_python(documented[key])
        if shown is ...:
            continue
        value = str(default) if isinstance(default, Path) else default
        value = float(value) if isinstance(value, int | float) and \
            not isinstance(value, bool) else value
        assert shown == value, f"{key}: README says {documented[key]}, the code {default!r}"


# --- commands and exit codes (B15) -------------------------------------------------------------


def commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_the_command_list_names_every_command() -> None:
    block = README.split("## Running the daemon", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"^qmpdirty ([a-z-]+)", block, re.M))
    assert named == set(commands())


def test_help_and_readme_agree_on_exit_codes() -> None:
    section = README.split("## Running the daemon", 1)[1].split("### Reaching QEMU", 1)[0]
    for code, meaning in (("0", "success"), ("1", "runtime failure"), ("2", "bad usage"),
                          ("3", "cannot tell")):
        assert f"{code} " in EPILOG and meaning in EPILOG, (code, EPILOG)
        assert re.search(rf"\b{code}\b[^\n]*{meaning}", section), (code, meaning)
    assert "3 cannot tell" in section and "exit 0 yes, 1 no (+ reasons), 3" in section
