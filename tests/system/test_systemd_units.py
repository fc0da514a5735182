"""The shipped systemd units lint clean and stay hardened, checked offline with systemd-analyze.

No systemd needs to run: ``systemd-analyze verify`` and ``security --offline=yes`` read unit
files. ``verify`` exits 0 even on unknown keys, so any output at all fails. It also rejects an
ExecStart binary that does not exist, so the units are checked as installed copies whose
ExecStart points at this checkout's real ``qmpdirty`` console script.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
SHIPPED_EXEC = "ExecStart=/usr/local/bin/qmpdirty "
MAX_EXPOSURE = 2.0
BOOTSTRAP = "run scripts/bootstrap (it installs the systemd package)"
UNITS = ["qmpdirty.service", "qmpdirty@example.service"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: {BOOTSTRAP}")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def _service_lines(text: str) -> list[tuple[str, str]]:
    """``(key, value)`` of the [Service] section in order; repeated keys kept."""
    section, out = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both unit files copied with ExecStart aimed at the venv's console script."""
    script = Path(sys.executable).parent / "qmpdirty"
    if not os.access(script, os.X_OK):
        pytest.fail(f"{script} missing: install the package (pip install -e .) or {BOOTSTRAP}")
    out = tmp_path_factory.mktemp("units")
    for name in ("qmpdirty.service", "qmpdirty@.service"):
        text = (SYSTEMD_DIR / name).read_text()
        assert text.count(SHIPPED_EXEC) == 1, f"{name}: expected one {SHIPPED_EXEC!r}"
        (out / name).write_text(text.replace(SHIPPED_EXEC, f"ExecStart={script} "))
    return out


@pytest.mark.parametrize("unit", UNITS)
def test_verify_prints_nothing(installed: Path, unit: str) -> None:
    result = _run(_tool("systemd-analyze"), "verify", str(installed / unit))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", UNITS)
def test_security_exposure_at_most_2(installed: Path, unit: str) -> None:
    result = _run(_tool("systemd-analyze"), "security", "--offline=yes", str(installed / unit))
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, f"no exposure line (rc {result.returncode}): {result.stdout}{result.stderr}"
    exposure = float(found.group(1))
    print(f"{unit}: overall exposure {exposure}")
    assert exposure <= MAX_EXPOSURE


def test_shipped_exec_start_fails_verify_without_the_binary() -> None:
    """Shows why the copies above rewrite ExecStart: verify does check the binary."""
    if Path("/usr/local/bin/qmpdirty").exists():
        pytest.skip("/usr/local/bin/qmpdirty is installed on this machine")
    result = _run(_tool("systemd-analyze"), "verify", str(SYSTEMD_DIR / "qmpdirty.service"))
    assert "/usr/local/bin/qmpdirty" in result.stdout + result.stderr


def test_template_differs_from_main_unit_only_per_instance() -> None:
    """The hardening is written twice (systemd has no include): keep the copies equal."""
    main = _service_lines((SYSTEMD_DIR / "qmpdirty.service").read_text())
    template = _service_lines((SYSTEMD_DIR / "qmpdirty@.service").read_text())
    per_instance = {
        ("ExecStart", "/usr/local/bin/qmpdirty run --config /etc/qmpdirty/qmpdirty.toml"): (
            "ExecStart",
            "/usr/local/bin/qmpdirty run --config /etc/qmpdirty/%i.toml",
        ),
        ("RuntimeDirectory", "qmpdirty"): ("RuntimeDirectory", "qmpdirty/%i"),
    }
    preserve = ("RuntimeDirectoryPreserve", "yes")  # only the main unit has instances below it
    expected = [per_instance.get(kv, kv) for kv in main if kv != preserve]
    assert template == expected


def test_lifecycle_settings_match_the_daemon() -> None:
    """Type=notify + watchdog + SIGHUP reload; stop timeout above the shutdown deadline."""
    from qmpdirty.config.sections import (
        DaemonConfig,  # here, so a config change breaks only this test
    )

    lines = dict(_service_lines((SYSTEMD_DIR / "qmpdirty.service").read_text()))
    assert lines["Type"] == "notify"
    assert lines["NotifyAccess"] == "main"
    assert lines["WatchdogSec"] == "30s"
    assert lines["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert lines["Restart"] == "on-failure"
    assert lines["RuntimeDirectory"] == "qmpdirty"
    stop_s = float(lines["TimeoutStopSec"].removesuffix("s"))
    assert DaemonConfig().shutdown_deadline_s < stop_s <= DaemonConfig().shutdown_deadline_s + 10


def test_sysusers_and_tmpfiles_apply_to_an_empty_root(tmp_path: Path) -> None:
    """The user exists before the unit starts, and /etc/qmpdirty is root:qmpdirty 0750."""
    (tmp_path / "etc").mkdir()
    sysusers = (SYSTEMD_DIR / "qmpdirty.sysusers").read_text()
    result = subprocess.run(
        [_tool("systemd-sysusers"), f"--root={tmp_path}", "-"],
        input=sysusers,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc/passwd").read_text()
    entry = next(line.split(":") for line in passwd.splitlines() if line.startswith("qmpdirty:"))
    assert entry[6] == "/usr/sbin/nologin"
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles --create chowns: needs root")
    tmpfiles = (SYSTEMD_DIR / "qmpdirty.tmpfiles").read_text()
    result = subprocess.run(
        [_tool("systemd-tmpfiles"), f"--root={tmp_path}", "--create", "-"],
        input=tmpfiles,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    made = (tmp_path / "etc/qmpdirty").stat()
    assert (made.st_uid, made.st_gid, made.st_mode & 0o7777) == (0, int(entry[3]), 0o750)


def test_the_host_memory_drop_in_applies_and_stays_hardened(installed: Path,
                                                           tmp_path: Path) -> None:
    """The opt-in drop-in (CAP_SYS_PTRACE, no private user namespace) verifies clean beside
    the unit, visibly changes it, and keeps the exposure at most 2."""
    unit = tmp_path / "qmpdirty.service"
    unit.write_text((installed / "qmpdirty.service").read_text())
    drop_in = tmp_path / "qmpdirty.service.d"
    drop_in.mkdir()
    (drop_in / "host-memory.conf").write_text((SYSTEMD_DIR / "host-memory.conf").read_text())
    result = _run(_tool("systemd-analyze"), "verify", str(unit))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    report = _run(_tool("systemd-analyze"), "security", "--offline=yes", str(unit)).stdout
    assert "✗ CapabilityBoundingSet=~CAP_SYS_PTRACE" in report  # the drop-in took effect
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", report)
    assert found and float(found.group(1)) <= MAX_EXPOSURE, report
