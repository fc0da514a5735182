"""Configuration: the TOML file and ``QMPDIRTY_*`` overrides, validated (shell).

``load.py`` reads the file and the environment and reports every problem with its
key path; ``sections.py`` holds the pydantic model of each ``[section]``, ``hooks.py``
those of ``[hooks]`` and ``[[hook]]``. The pure core imports section models from
``config.sections`` and ``config.hooks`` only (no file I/O there).
"""

from qmpdirty.config.load import (
    DEFAULT_PATH,
    ENV_PREFIX,
    HINTS,
    Config,
    ConfigError,
    DaemonConfig,
    DeviceCapsConfig,
    DirtyRateConfig,
    DiscoveryConfig,
    ForecastConfig,
    HomeAssistantConfig,
    HookConfig,
    HookEvent,
    HooksConfig,
    HostConfig,
    MigrationConfig,
    MqttConfig,
    PolicyConfig,
    PrometheusConfig,
    QmpConfig,
    ServerConfig,
    VfioConfig,
    VmConfig,
    load_config,
    problems_from,
    read_secret,
    read_toml,
)

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
