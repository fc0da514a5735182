"""Configuration: TOML file + ``QMPDIRTY_<SECTION>__<KEY>`` environment overrides.

Stage: shell (reads files). Models are pydantic with unknown keys rejected; every
problem is reported with its key path and a hint, all at once, by
``load_config`` raising ``ConfigError`` (``check-config`` prints them, exit 2). A
problem with a value that came from a ``QMPDIRTY_*`` variable names that variable
(``config.environment``), not the file.
A missing or unreadable file is an error, never silent defaults. Secrets are
referenced by file (``password_file``) and never echoed.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from qmpdirty.config.address import ADDRESS_HINT
from qmpdirty.config.environment import ENV_PREFIX, blame_environment
from qmpdirty.config.hooks import COMMAND_HINT, HookConfig, HookEvent, HooksConfig
from qmpdirty.config.sections import (
    DaemonConfig,
    DeviceCapsConfig,
    DirtyRateConfig,
    DiscoveryConfig,
    ForecastConfig,
    HomeAssistantConfig,
    HostConfig,
    MigrationConfig,
    MqttConfig,
    PolicyConfig,
    PrometheusConfig,
    QmpConfig,
    ServerConfig,
    VfioConfig,
    VmConfig,
)
from qmpdirty.errors import ConfigError

__all__ = [
    "DEFAULT_PATH",
    "ENV_PREFIX",
    "HINTS",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DeviceCapsConfig",
    "DirtyRateConfig",
    "DiscoveryConfig",
    "ForecastConfig",
    "HomeAssistantConfig",
    "HookConfig",
    "HookEvent",
    "HooksConfig",
    "HostConfig",
    "MigrationConfig",
    "MqttConfig",
    "PolicyConfig",
    "PrometheusConfig",
    "QmpConfig",
    "ServerConfig",
    "VfioConfig",
    "VmConfig",
    "load_config",
    "problems_from",
    "read_secret",
    "read_toml",
]

DEFAULT_PATH = Path("/etc/qmpdirty/qmpdirty.toml")


class Config(BaseSettings):
    """The whole configuration; sections default when absent."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter="__",
        env_parse_none_str="null",
    )

    mqtt: MqttConfig = MqttConfig()
    host: HostConfig = Field(default_factory=HostConfig, validate_default=True)
    vm: list[VmConfig] = Field(default_factory=list)
    discovery: DiscoveryConfig = DiscoveryConfig()
    server: ServerConfig = ServerConfig()
    qmp: QmpConfig = QmpConfig()
    dirty_rate: DirtyRateConfig = DirtyRateConfig()
    migration: MigrationConfig = MigrationConfig()
    vfio: VfioConfig = VfioConfig()
    forecast: ForecastConfig = ForecastConfig()
    policy: PolicyConfig = PolicyConfig()
    device_caps: list[DeviceCapsConfig] = Field(default_factory=list)
    daemon: DaemonConfig = DaemonConfig()
    hooks: HooksConfig = HooksConfig()
    hook: list[HookConfig] = Field(default_factory=list)
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    prometheus: PrometheusConfig = PrometheusConfig()

    @field_validator("host")
    @classmethod
    def _named(cls, host: HostConfig) -> HostConfig:
        """An empty ``[host] name`` is this host's short name (``socket.gethostname``,
        up to the first dot), read here so that the sections themselves do no I/O."""
        if host.name:
            return host
        return host.model_copy(update={"name": socket.gethostname().split(".")[0]})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment over file: the file's table arrives as init arguments."""
        return env_settings, init_settings


HINTS: dict[str, str] = {
    "mqtt.url": "for example url = \"mqtt://broker.example:1883\"",
    "mqtt.password_file": "a file readable by the daemon holding only the password",
    "mqtt.outbox_size": "messages kept while the broker is away; 10000 is the default",
    "vm.qmp": ADDRESS_HINT,
    "server.mode": "quote it: mode = \"0660\"",
    "dirty_rate.mode": "page-sampling is safe everywhere; dirty-ring can freeze nested guests",
    "dirty_rate.sample_pages": "per GiB, 128 to 16384; unset (the default) sizes it from "
                               "sample_budget_pages and the guest's RAM",
    "dirty_rate.sample_budget_pages": "pages hashed per measurement, all windows together; "
                                      "262144 is the default (README § Dirty rate)",
    "dirty_rate.windows": "back-to-back windows per measurement, 1 to 16; 4 is the default",
    "device_caps": "each entry: bdf = \"0000:3b:00.1\" or driver = \"mlx5_vfio_pci\", then facts",
    "device_caps.bdf": "lower-case domain:bus:slot.function, as in /sys/bus/pci/devices",
    "hook.command": COMMAND_HINT + "; see docs/hooks.md",
    "hook.event": "see docs/hooks.md § Events: a kind, \"*\" for every kind, or "
                  "\"qmp:NAME\" for a QMP event as QEMU names it (\"qmp:GUEST_PANICKED\")",
    "hook.data": "a table of the QMP event's data members, e.g. event = \"qmp:BLOCK_IO_ERROR\" "
                 "with data = { device = \"drive0\" }; see docs/hooks.md § QMP events",
}


def _hint(path: str, err_type: str, key: str, siblings: list[str]) -> str:
    generic = re.sub(r"\[\d+\]", "", path)
    if err_type == "extra_forbidden":
        close = difflib.get_close_matches(key, siblings, n=1)
        known = ", ".join(siblings) if siblings else "none"
        return f"did you mean {close[0]!r}?" if close else f"known keys here: {known}"
    return HINTS.get(generic, "see README § Configuration")


def _model_keys(loc: tuple[int | str, ...]) -> list[str]:
    """Field names valid beside the offending key, for typo hints."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        model = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields) if model is not None else []


def problems_from(exc: ValidationError) -> list[tuple[str, str, str]]:
    """One ``(key path, message, hint)`` per validation error."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        key = str(loc[-1]) if loc else ""
        out.append((path or "<file>", msg, _hint(path, err["type"], key, _model_keys(loc))))
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Read the TOML file; missing, unreadable or malformed is a ConfigError."""
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(str(path), [("<file>", "no such file",
                          "create it (see README § Configuration) or pass --config PATH")]) from exc
    except IsADirectoryError as exc:
        raise ConfigError(str(path), [("<file>", "cannot read: it is a directory",
                          "pass the TOML file itself")]) from exc
    except OSError as exc:
        raise ConfigError(str(path), [("<file>", f"cannot read: {exc.strerror}",
                          "check the path and the daemon's permissions")]) from exc
    try:
        return tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [("<file>", f"not valid TOML: {exc}",
                          "fix the syntax at the line and column given")]) from exc


def _check_files(cfg: Config) -> list[tuple[str, str, str]]:
    """Files the config names must be readable now, not at the first reconnect."""
    out = []
    named = {
        "mqtt.password_file": cfg.mqtt.password_file, "mqtt.ca_file": cfg.mqtt.ca_file,
        "mqtt.cert_file": cfg.mqtt.cert_file, "mqtt.key_file": cfg.mqtt.key_file,
    }
    for key, path in named.items():
        if path is None:
            continue
        why = ("does not exist" if not path.exists() else "is not a file" if not path.is_file()
               else "is not readable" if not os.access(path, os.R_OK) else "")
        if why:
            out.append((key, f"{path} {why}", "check the path and the daemon's permissions"))
    if cfg.mqtt.username is not None and cfg.mqtt.password_file is None:
        out.append(("mqtt.password_file", "username is set but no password_file",
                    "set password_file, or remove username for anonymous access"))
    return out


def _unknown_env_sections() -> list[tuple[str, str, str]]:
    """``QMPDIRTY_<SECTION>__KEY`` with a section that does not exist (a typo)."""
    out = []
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and "__" in name:
            section = name[len(ENV_PREFIX):].split("__", 1)[0].lower()
            if section not in Config.model_fields:
                close = difflib.get_close_matches(section, list(Config.model_fields), n=1)
                out.append((name, f"unknown section {section!r} in an environment variable",
                            f"did you mean {ENV_PREFIX}{close[0].upper()}__...?" if close
                            else f"sections: {', '.join(Config.model_fields)}"))
    return out


def load_config(path: Path) -> Config:
    """Load and validate (``QMPDIRTY_*`` variables override the file); raise
    ConfigError listing every problem found."""
    table = read_toml(path)
    problems = _unknown_env_sections()
    try:
        cfg = Config(**table)
    except ValidationError as exc:  # `from None`: pydantic's text quotes inputs (secrets)
        raise ConfigError(str(path), problems + blame_environment(problems_from(exc))) from None
    except SettingsError as exc:
        field = re.search(r'field "(\w+)"', str(exc))
        key = field.group(1) if field else "<environment>"
        raise ConfigError(str(path), [*problems, (
            key, f"{ENV_PREFIX}{key.upper()} is not valid JSON",
            "tables and lists from the environment are JSON, e.g. '[{\"qmp\": \"unix:/x\"}]'",
        )]) from None
    problems += blame_environment(_check_files(cfg))
    if problems:
        raise ConfigError(str(path), problems)
    return cfg


def read_secret(path: Path) -> str:
    """The first line of a secret file, without its newline."""
    return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
