"""Fixtures shared by every test tier: the guest image, a private broker, lab VMs, and
an environment without the machine's ``QMPDIRTY_*`` variables.

The real parts (qemu-system-x86_64 under TCG, mosquitto) are installed by
``scripts/bootstrap``; a missing one fails loudly with what to run, never skips.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qmpdirty.demo.lab.broker import Mosquitto
from qmpdirty.demo.lab.guest import GuestImage, ensure_guest
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.recorder import Recorder

# tests/support's helpers assert too: rewritten, their failures show the values
pytest.register_assert_rewrite("tests.support")

ROOT = Path(__file__).resolve().parent.parent


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is missing: run `make test` (scripts/bootstrap installs it)")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No QMPDIRTY_* variable of the machine running the tests leaks in (the config reads
    them); a module asks for it with ``pytestmark = pytest.mark.usefixtures("clean_env")``."""
    for name in list(os.environ):
        if name.upper().startswith("QMPDIRTY_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="session")
def guest() -> GuestImage:
    """The dirtying guest (Debian cloud kernel + busybox + dirtier), built once and cached."""
    _require("qemu-system-x86_64")
    cache = Path(os.environ.get("QMPDIRTY_GUEST_DIR", ROOT / ".cache" / "guest"))
    return ensure_guest(cache)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A private mosquitto on a free loopback port, for one test."""
    _require("mosquitto")
    with Mosquitto() as b:  # started on entry
        yield b


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    """Records everything published under ``qmpdirty/#`` on the test's broker."""
    rec = Recorder(broker.port)
    yield rec
    rec.close()


@pytest.fixture
def lab_vm(guest: GuestImage, tmp_path: Path) -> Iterator[Callable[..., QemuVm]]:
    """Factory for lab QEMUs, all stopped at the end of the test."""
    vms: list[QemuVm] = []

    def start(spec: QemuSpec) -> QemuVm:
        vm = QemuVm(spec, guest, run_dir=tmp_path / spec.name).start()
        vms.append(vm)
        return vm

    yield start
    for vm in vms:
        vm.stop()
