"""The configuration's sections, as pydantic models (stage: config; no I/O).

``config.load`` loads, merges and reports problems (and fills in what needs reading, such
as the host's name); each model here validates one TOML table. Unknown keys are rejected
(``extra="forbid"``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qmpdirty.config.address import QmpAddress, parse_qmp_address
from qmpdirty.facts.qemu import SAMPLE_PAGES_MAX, SAMPLE_PAGES_MIN


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

    #: empty: the short host name, which ``config.load.Config`` fills in (it reads it)
    name: str = ""
    sysfs_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    debugfs_root: Path = Path("/sys/kernel/debug")
    boot_root: Path = Path("/boot")  # holds config-<release>, the running kernel's config



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
    liveness_interval_s: float = Field(default=5.0, gt=0, description="query-status this "
                                       "often; no reply in command_timeout_s = unresponsive")


class DirtyRateConfig(_Section):
    """``[dirty_rate]``: periodic ``calc-dirty-rate``; one measurement is ``windows``
    back-to-back windows (as many as fit in ``interval_s``) hashing
    ``sample_budget_pages`` pages in all, unless ``sample_pages`` (per GiB) is set
    (``decisions.migration.dirtyrate``)."""

    enabled: bool = True
    mode: Literal["page-sampling", "dirty-bitmap", "dirty-ring"] = "page-sampling"
    interval_s: float = Field(default=30.0, gt=0)
    window_s: float = Field(default=1.0, gt=0, le=60)
    sample_pages: int | None = Field(
        default=None, description="pages per GiB, QEMU's 128-16384; default: from the budget")
    sample_budget_pages: int = Field(default=1_048_576, ge=1024, le=16_777_216)
    windows: int = Field(default=4, ge=1, le=16)

    @field_validator("sample_pages")
    @classmethod
    def _sample_pages(cls, value: int | None) -> int | None:
        if value is not None and not SAMPLE_PAGES_MIN <= value <= SAMPLE_PAGES_MAX:
            raise ValueError(f"QEMU's calc-dirty-rate accepts {SAMPLE_PAGES_MIN} to "
                             f"{SAMPLE_PAGES_MAX} pages per GiB; leave it unset to size it "
                             "from sample_budget_pages")
        return value


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
                                  "event: look for a hot-plug this often, in the device "
                                  "lists while a VFIO device could come, else in QEMU's "
                                  "blocked-reasons (0 = off)")


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


class HomeAssistantConfig(_Section):
    """``[homeassistant]``: MQTT discovery messages for Home Assistant."""

    enabled: bool = False
    discovery_prefix: str = Field(default="homeassistant", min_length=1)


class PrometheusConfig(_Section):
    """``[prometheus]``: serve ``/metrics`` on ``listen`` (off when unset)."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to listen on, or None (off)."""
        return split_listen(self.listen) if self.listen is not None else None


def split_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9800`` for IPv6) -> ``(host, port)``; ValueError if not."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. \"127.0.0.1:9800\" or \"[::1]:9800\"")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("put an IPv6 address in brackets: \"[::1]:9800\"")
    return host.strip("[]"), int(port)


class DaemonConfig(_Section):
    """``[daemon]``: lifecycle, logging, and forgetting VMs that are gone."""

    shutdown_deadline_s: float = Field(default=10.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: A VM with no QMP session for this long is forgotten: its retained topics and
    #: Home Assistant discovery are cleared (0 = never; README § Guarantees).
    forget_after_s: float = Field(default=600.0, ge=0, allow_inf_nan=False)
