"""docs/schema/*.json must be exactly what the payload models generate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from qmpdirty.telemetry.schema import PAYLOADS

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = ROOT / "docs" / "schema"


def _generator() -> ModuleType:
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("gen_schema", str(ROOT / "scripts" / "gen-schema"))
    spec = importlib.util.spec_from_loader("gen_schema", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_committed_schemas_match_the_models() -> None:
    expected: dict[str, str] = _generator().rendered()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DOCS.glob("*.json")}
    stale = sorted(n for n in expected if committed.get(n) != expected[n])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"docs/schema is stale (changed: {stale}, no longer generated: {extra}); "
        "run `make schema` and commit the result")


def test_every_payload_schema_names_the_common_fields() -> None:
    for name in PAYLOADS:
        schema = json.loads((DOCS / f"{name}.json").read_text())
        assert {"schema", "ts", "host", "seq"} <= set(schema["required"]), name
        if name != "daemon":
            assert "vm" in schema["required"], name


def driver_table_markdown() -> str:
    """The README's driver table, rendered from ``decisions/vfio/drivers.py``."""
    from qmpdirty.decisions.vfio.drivers import DRIVERS

    def yes(value: bool | None, depends: str) -> str:
        return f"per device: {depends}" if value is None else ("yes" if value else "no")

    rows = ["| driver | mig_ops (STOP_COPY) | P2P | PRE_COPY | DMA logging (log_ops) | "
            "Linux 7.1.8 | migration since |", "|---|---|---|---|---|---|---|"]
    for d in DRIVERS:
        flags = ("-", "-") if d.migration is False else (yes(d.p2p, ""), yes(d.pre_copy, ""))
        rows.append(f"| `{d.name}` | {yes(d.migration, d.depends)} | {flags[0]} | {flags[1]} | "
                    f"{yes(d.dma_logging, d.logging_depends)} | `{d.source}` | "
                    f"{d.kernel or '-'} |")
    return "\n".join(rows) + "\n"


def test_readme_driver_table_is_current() -> None:
    assert driver_table_markdown() in (ROOT / "README.md").read_text(encoding="utf-8"), (
        "README.md's driver table is stale: paste tests.unit.test_schema_docs."
        "driver_table_markdown()")
