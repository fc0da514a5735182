"""Configuration: TOML file + ``QMPDIRTY_<SECTION>__<KEY>`` environment overrides.

Stage: shell (reads files). Models are pydantic with unknown keys rejected; every
problem is reported with its key path and a hint, all at once, by
``load_config`` raising ``ConfigError`` (``check-config`` prints them, exit 2).
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
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from qmpdirty.errors import ConfigError
from qmpdirty.qmp.address import ADDRESS_HINT, QmpAddress, parse_qmp_address

DEFAULT_PATH = Path("/etc/qmpdirty/qmpdirty.toml")
ENV_PREFIX = "QMPDIRTY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Section):
    """``[mqtt]``: the broker and how to publish to it."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    topic_prefix: str = "qmpdirty"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=65535)
    outbox_size: int = Field(default=10_000, ge=1, le=10_000_000)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    event_expiry_s: int = Field(default=3600, ge=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # Never echo the URL: it may hold a password.
        parts = urlsplit(value)
        if "@" in parts.netloc:
            raise ValueError("put credentials in username / password_file, not in the URL")
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("bad port: use a number from 1 to 65535") from None
        return value

    @model_validator(mode="after")
    def _tls(self) -> MqttConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class HostConfig(_Section):
    """``[host]``: this host's name in topics and where its kernel facts are read."""

    name: str = ""
    sysfs_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    debugfs_root: Path = Path("/sys/kernel/debug")
    boot_root: Path = Path("/boot")  # holds config-<release>, the running kernel's config

    @property
    def resolved_name(self) -> str:
        """The configured name, else the short host name."""
        return self.name or socket.gethostname().split(".")[0]


class VmConfig(_Section):
    """``[[vm]]``: one QEMU to connect to (client mode)."""

    name: str | None = None
    qmp: str

    @field_validator("qmp")
    @classmethod
    def _qmp(cls, value: str) -> str:
        parse_qmp_address(value)
        return value

    @property
    def address(self) -> QmpAddress:
        return parse_qmp_address(self.qmp)


class DiscoveryConfig(_Section):
    """``[discovery]``: QMP sockets found by glob, rescanned periodically."""

    globs: list[str] = Field(default_factory=list)
    rescan_interval_s: float = Field(default=10.0, gt=0)


class ServerConfig(_Section):
    """``[server]``: the socket QEMUs dial (server mode). Empty ``socket`` = off."""

    socket: Path | None = None
    mode: str = "0660"
    group: str | None = None

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if not (len(value) in (3, 4) and all(c in "01234567" for c in value)):
            raise ValueError("must be an octal file mode such as \"0660\"")
        return value

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)


class QmpConfig(_Section):
    """``[qmp]``: timeouts, reconnection and what the daemon may change."""

    command_timeout_s: float = Field(default=5.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    reconnect_initial_s: float = Field(default=0.2, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)
    enable_migration_events: bool = True
    event_queue_size: int = Field(default=1000, ge=10)


class DirtyRateConfig(_Section):
    """``[dirty_rate]``: periodic ``calc-dirty-rate``."""

    enabled: bool = True
    mode: Literal["page-sampling", "dirty-bitmap", "dirty-ring"] = "page-sampling"
    interval_s: float = Field(default=30.0, gt=0)
    window_s: float = Field(default=1.0, gt=0, le=60)
    sample_pages: int = Field(default=512, ge=1, le=1_000_000)


class MigrationConfig(_Section):
    """``[migration]``: ``query-migrate`` polling while a migration runs."""

    poll_interval_s: float = Field(default=1.0, gt=0)
    poll_interval_fast_s: float = Field(default=0.25, gt=0)


class ForecastConfig(_Section):
    """``[forecast]``: the convergence model's assumptions."""

    bandwidth_bytes_per_s: float | None = Field(
        default=None, gt=0, description="assumed before a migration; default: last measured")
    vfio_stop_copy_bytes: int = Field(default=0, ge=0)
    max_passes: int = Field(default=30, ge=1, le=1000)
    publish_interval_s: float = Field(default=30.0, gt=0)


class PolicyConfig(_Section):
    """``[policy]``: what the daemon may change in a VM. Everything off by default."""

    apply_recommendations: bool = False
    under_libvirt: bool = True


class VfioConfig(_Section):
    """``[vfio]``: the VFIO dirty-tracking engine's re-evaluation."""

    enabled: bool = True
    refresh_interval_s: float = Field(default=60.0, gt=0)
    debounce_s: float = Field(default=0.5, ge=0, le=60)
    hotplug_poll_s: float = Field(default=5.0, ge=0, description="QEMU has no DEVICE_ADDED "
                                  "event: compare the device lists this often (0 = off)")


class DeviceCapsConfig(_Section):
    """``[[device_caps]]``: what the host cannot show about a device, stated by the
    operator, matched by ``bdf`` or by bound ``driver`` (a BDF entry wins)."""

    bdf: str | None = None
    driver: str | None = None
    migration: bool | None = None
    p2p: bool | None = None
    pre_copy: bool | None = None
    dma_logging: bool | None = None
    max_ranges: int | None = Field(default=None, ge=1, le=65535)
    max_log2_address_space: int | None = Field(default=None, ge=12, le=64)

    @field_validator("bdf")
    @classmethod
    def _bdf(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]",
                                                  value):
            raise ValueError("must be a PCI address such as \"0000:3b:00.1\" (lower case)")
        return value

    @model_validator(mode="after")
    def _selector(self) -> DeviceCapsConfig:
        if (self.bdf is None) == (self.driver is None):
            raise ValueError("give exactly one of bdf or driver")
        return self


HookEvent = Literal["migration-status", "blockers-changed", "tracking-changed",
                    "forecast-negative", "vm-online", "vm-offline", "*"]
_COMMAND_HINT = 'command = ["/usr/local/bin/on-migration", "--flag"] (a list; run without a shell)'


class HooksConfig(_Section):
    """``[hooks]``: the hook runner's worker pool, queue and default timeout."""

    max_concurrent: int = Field(default=4, ge=1, le=64)
    queue_size: int = Field(default=100, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=3600)


class HookConfig(_Section):
    """``[[hook]]``: one executable run (without a shell) on one kind of event."""

    event: HookEvent
    command: list[str] = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("command", mode="before")
    @classmethod
    def _command_is_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError("must be a list of strings, not one string: no shell splits it")
        return value

    @field_validator("command")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        if not value[0].startswith("/"):
            raise ValueError("the executable must be an absolute path (PATH is not searched)")
        if any("\0" in arg for arg in value):
            raise ValueError("arguments cannot contain NUL characters")
        return value


class HomeAssistantConfig(_Section):
    """``[homeassistant]``: MQTT discovery messages for Home Assistant."""

    enabled: bool = False
    discovery_prefix: str = Field(default="homeassistant", min_length=1)


class DaemonConfig(_Section):
    """``[daemon]``: lifecycle and logging."""

    shutdown_deadline_s: float = Field(default=10.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Config(BaseSettings):
    """The whole configuration; sections default when absent."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter="__",
        env_parse_none_str="null",
    )

    mqtt: MqttConfig = MqttConfig()
    host: HostConfig = HostConfig()
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
    "device_caps": "each entry: bdf = \"0000:3b:00.1\" or driver = \"mlx5_vfio_pci\", then facts",
    "device_caps.bdf": "lower-case domain:bus:slot.function, as in /sys/bus/pci/devices",
    "hook.command": _COMMAND_HINT + "; see docs/hooks.md",
    "hook.event": "see docs/hooks.md § Events; \"*\" matches every event",
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
        raise ConfigError(str(path), problems + problems_from(exc)) from None
    except SettingsError as exc:
        field = re.search(r'field "(\w+)"', str(exc))
        key = field.group(1) if field else "<environment>"
        raise ConfigError(str(path), [*problems, (
            key, f"{ENV_PREFIX}{key.upper()} is not valid JSON",
            "tables and lists from the environment are JSON, e.g. '[{\"qmp\": \"unix:/x\"}]'",
        )]) from None
    problems += _check_files(cfg)
    if problems:
        raise ConfigError(str(path), problems)
    return cfg


def read_secret(path: Path) -> str:
    """The first line of a secret file, without its newline."""
    return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
