"""Check JSON values against a QEMU's own ``query-qmp-schema`` introspection (lab).

The VFIO stand-in (``vfio_standin.py``) fabricates QMP replies; each one is checked
here against what the real QEMU underneath says its commands return, so that a
fabricated value of the wrong shape fails loudly instead of teaching qmpdirty a QEMU
that does not exist.

Introspection format (qapi/introspect.json): a list of ``SchemaInfo`` entities with a
``meta-type``: ``builtin`` (``json-type`` string/int/number/boolean/null/value),
``enum`` (``values``), ``array`` (``element-type``), ``object`` (``members`` of
``{name, type}``; a member is optional when it has a ``default`` key; a union adds
``tag`` and ``variants`` of ``{case, type}``), ``alternate`` (``members`` of
``{type}``), ``command`` (``arg-type``, ``ret-type``) and ``event`` (``arg-type``).
Type names other than the builtins are masked (``"146"``); arrays are named
``"[T]"``. All integer widths introspect as ``int``, so QOM integer properties are
range-checked here (``QOM_INT_RANGES``).

``QOM_LIST_GET_10_1`` supplements a 10.0 introspection with ``qom-list-get``
(transcribed from QEMU 10.2.2 qapi/qom.json: ``ObjectPropertiesValues``,
``ObjectPropertyValue``, "Since 10.1"), for presenting QEMU >= 10.1 on top of 10.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qmpdirty.demo.errors import DemoError

Entity = Mapping[str, Any]


class SchemaMismatch(DemoError, AssertionError):
    """A value does not have the shape the QEMU schema gives it.

    An ``AssertionError`` too: in a test, what QEMU would not say fails as one.
    """


#: qapi/error.json ``QapiErrorClass`` (not reachable from any command, so not introspected).
ERROR_CLASSES = frozenset({"GenericError", "CommandNotFound", "DeviceNotActive",
                           "DeviceNotFound", "KVMMissingCap"})

#: QOM integer property types -> inclusive range (qdev-properties.c PropertyInfo).
QOM_INT_RANGES: dict[str, tuple[int, int]] = {
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1), "size": (0, 2**64 - 1), "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1), "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1), "int": (-(2**63), 2**63 - 1),
}

_QLG = "qmpdirty:ObjectPropertyValue"
QOM_LIST_GET_10_1: tuple[Entity, ...] = (
    {"name": "qom-list-get", "meta-type": "command", "arg-type": "qmpdirty:qom-list-get-arg",
     "ret-type": "[qmpdirty:ObjectPropertiesValues]"},
    {"name": "qmpdirty:qom-list-get-arg", "meta-type": "object",
     "members": [{"name": "paths", "type": "[str]"}]},
    {"name": "qmpdirty:ObjectPropertiesValues", "meta-type": "object",
     "members": [{"name": "properties", "type": f"[{_QLG}]"}]},
    {"name": _QLG, "meta-type": "object",
     "members": [{"name": "name", "type": "str"}, {"name": "type", "type": "str"},
                 {"name": "value", "type": "any", "default": None}]},
)

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "int": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class QapiSchema:
    """One QEMU's introspected schema, indexed by entity name."""

    entities: Mapping[str, Entity] = field(default_factory=dict)

    @classmethod
    def from_introspection(cls, reply: object, supplement: Iterable[Entity] = ()
                           ) -> QapiSchema:
        """From the ``query-qmp-schema`` return value (plus extra entities)."""
        if not isinstance(reply, list) or not all(isinstance(e, dict) for e in reply):
            raise SchemaMismatch("query-qmp-schema: not a list of SchemaInfo objects")
        entities = {e["name"]: e for e in reply}
        entities.update((e["name"], e) for e in supplement)
        return cls(entities)

    def has_command(self, name: str) -> bool:
        return self._find(name, "command") is not None

    def check_return(self, command: str, value: object) -> None:
        """``value`` is what ``command`` may return."""
        entity = self._require(command, "command")
        self.check(entity["ret-type"], value, f"{command} return")

    def check_arguments(self, command: str, arguments: object) -> None:
        entity = self._require(command, "command")
        self.check(entity["arg-type"], arguments or {}, f"{command} arguments")

    def check_event(self, event: str, data: object) -> None:
        """``data`` is what ``event`` carries; an event QEMU does not have fails."""
        entity = self._require(event, "event")
        self.check(entity.get("arg-type", "0"), data, f"event {event} data")

    def check_error(self, error_class: str, desc: object) -> None:
        if error_class not in ERROR_CLASSES or not isinstance(desc, str):
            raise SchemaMismatch(f"error {error_class!r}/{desc!r} is not a QMP error")

    def enum_with(self, values: Iterable[str]) -> str:
        """The masked name of an enum with exactly these values (e.g. OnOffAuto)."""
        wanted = set(values)
        for name, e in self.entities.items():
            if e["meta-type"] == "enum" and set(e.get("values", ())) == wanted:
                return name
        raise SchemaMismatch(f"the schema has no enum with values {sorted(wanted)}")

    def check_qom_value(self, qom_type: str, value: object, where: str) -> None:
        """A ``qom-get`` value of a property whose getter visits ``qom_type``: child<>
        and link<> are path strings, every integer width is ``int`` (qapi/qom.json)."""
        if qom_type in QOM_INT_RANGES:
            self.check("int", value, where)
            low, high = QOM_INT_RANGES[qom_type]
            if not low <= value <= high:  # type: ignore[operator]
                raise SchemaMismatch(f"{where}: {value} out of range for {qom_type}")
        elif qom_type == "OnOffAuto":
            self.check(self.enum_with(("on", "off", "auto")), value, where)
        elif qom_type in ("str", "string") or qom_type.startswith(("link<", "child<")):
            self.check("str", value, where)
            if qom_type.startswith(("link<", "child<")) and value and \
                    not str(value).startswith("/"):
                raise SchemaMismatch(f"{where}: {value!r} is not a QOM path")
        elif qom_type == "bool":
            self.check("bool", value, where)
        else:
            raise SchemaMismatch(f"{where}: no QAPI mapping for QOM type {qom_type!r}")

    # --- the checker ---------------------------------------------------------------

    def check(self, type_name: str, value: object, where: str) -> None:
        """Raise ``SchemaMismatch`` unless ``value`` is a ``type_name``."""
        entity = self._find(type_name, None)
        if entity is None and type_name.startswith("[") and type_name.endswith("]"):
            entity = {"meta-type": "array", "element-type": type_name[1:-1]}
        if entity is None:
            raise SchemaMismatch(f"{where}: type {type_name!r} is not in the schema")
        meta = entity["meta-type"]
        if meta == "builtin":
            self._builtin(entity, value, where)
        elif meta == "enum":
            if value not in entity["values"]:
                raise SchemaMismatch(f"{where}: {value!r} not in enum {entity['values']}")
        elif meta == "array":
            if not isinstance(value, list):
                raise SchemaMismatch(f"{where}: expected an array, got {value!r}")
            for i, item in enumerate(value):
                self.check(entity["element-type"], item, f"{where}[{i}]")
        elif meta == "object":
            self._object(entity, value, where)
        elif meta == "alternate":
            self._alternate(entity, value, where)
        else:
            raise SchemaMismatch(f"{where}: {type_name!r} is a {meta}, not a type")

    def _builtin(self, entity: Entity, value: object, where: str) -> None:
        json_type = entity["json-type"]
        if json_type == "value":
            _check_json(value, where)
            return
        kinds = _JSON_TYPES.get(json_type)
        if kinds is None:
            raise SchemaMismatch(f"{where}: unsupported builtin json-type {json_type!r}")
        is_bool = isinstance(value, bool)
        if not isinstance(value, kinds) or (is_bool and json_type != "boolean"):
            raise SchemaMismatch(f"{where}: expected {entity['name']}, got {value!r}")

    def _object(self, entity: Entity, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise SchemaMismatch(f"{where}: expected an object, got {value!r}")
        members = list(entity.get("members", ()))
        tag = entity.get("tag")
        if tag is not None and tag in value:
            variant = next((v["type"] for v in entity.get("variants", ())
                            if v["case"] == value[tag]), None)
            if variant is not None:
                members += self._require(variant, "object").get("members", ())
        self._members(members, value, where)

    def _members(self, members: Sequence[Entity], value: dict[str, Any], where: str) -> None:
        known = {m["name"]: m for m in members}
        for name in value:
            if name not in known:
                raise SchemaMismatch(f"{where}: unexpected member {name!r}")
        for name, member in known.items():
            if name in value:
                self.check(member["type"], value[name], f"{where}.{name}")
            elif "default" not in member:
                raise SchemaMismatch(f"{where}: required member {name!r} missing")

    def _alternate(self, entity: Entity, value: object, where: str) -> None:
        problems = []
        for member in entity["members"]:
            try:
                self.check(member["type"], value, where)
            except SchemaMismatch as exc:
                problems.append(str(exc))
            else:
                return
        raise SchemaMismatch(f"{where}: matches no branch of the alternate: {problems}")

    def _find(self, name: str, meta: str | None) -> Entity | None:
        entity = self.entities.get(name)
        if entity is not None and (meta is None or entity["meta-type"] == meta):
            return entity
        return None

    def _require(self, name: str, meta: str) -> Entity:
        entity = self._find(name, meta)
        if entity is None:
            raise SchemaMismatch(f"{meta} {name!r} is not in this QEMU's schema")
        return entity


def _check_json(value: object, where: str) -> None:
    """``any``: a JSON value (what the QObject output visitor can produce)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaMismatch(f"{where}: non-string key {key!r}")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise SchemaMismatch(f"{where}: {value!r} is not JSON")
