"""The demo's third VM, ``gamma``: a real QEMU whose VFIO device is simulated (demo).

This machine has no VFIO hardware. gamma is a real ``qemu-system-x86_64`` (q35, TCG)
running the lab guest like alpha; the daemon reaches its QMP through the lab's VFIO
stand-in (``lab/vfio_standin.py``), which forwards every command to that QEMU and adds
to the replies what QEMU 10.0.2 would show with one more device on its command line:

* ``hostdev0``: ``-device vfio-pci,host=0000:3b:00.0,id=hostdev0`` at pcie.0 slot 4, a
  ConnectX-6 Dx VF with one 32 MiB 64-bit BAR mapped at 0x380000000000;

and the daemon reads a fake host tree (``lab/fakehost.py``) in which that VF is bound to
``mlx5_vfio_pci`` and debugfs lists all its migration features, plus a Samsung NVMe
controller at 0000:3c:00.0 bound to plain ``vfio-pci`` (no migration driver), not yet
in the VM. The VF's DMA-logging limits (4 ranges, 2^42 bytes) are stated in the daemon's
``[[device_caps]]``, as an operator states what sysfs cannot show.

``PLUG`` is what the demo hot-plugs: that NVMe controller, on the root port ``rp1``.
The blocker QEMU registers for it is written here by hand from QEMU's source, never
computed by qmpdirty, so the daemon's prediction is compared with QEMU's word as the
stand-in reports it. Everything else (RAM, the memory map, run state, dirty rate,
events) is the real QEMU's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from qmpdirty.demo.errors import DemoError
from qmpdirty.demo.lab.fakehost import (
    ALL_FEATURES,
    ECAP_DIRTY,
    FakeDevice,
    FakeHost,
    FakeTree,
    IntelUnit,
    build,
)
from qmpdirty.demo.lab.guest import GuestImage
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.demo.lab.vfio_hotplug import Plug, bridge_bus
from qmpdirty.demo.lab.vfio_lab import StandInThread
from qmpdirty.demo.lab.vfio_scenario import MLX5_VF, NVME, Bar, FabDevice, Scenario

NAME = "gamma"
VF = "0000:3b:00.0"
NVME_BDF = "0000:3c:00.0"
ROOT_PORT = "rp1"
MAX_RANGES, MAX_LOG2 = 4, 42

#: What QEMU 10.0.2 shows with ``-device vfio-pci,host=0000:3b:00.0,id=hostdev0,addr=4``.
SCENARIO = Scenario((10, 0, 2), (
    FabDevice("hostdev0", VF, 4 << 3, pci_id=MLX5_VF,
              bars=(Bar(0, 0x3800_0000_0000, 0x200_0000),)),))
#: ``device_add driver=vfio-pci,host=0000:3c:00.0,id=hostdev1,bus=rp1``: QEMU 10.0.2
#: hw/vfio/migration.c:1081-1085 ``vfio_migration_realize``: plain vfio-pci has no
#: mig_ops, VFIO_DEVICE_FEATURE_MIGRATION fails with -ENOTTY, enable-migration=auto
#: -> ``vfio_block_migration`` with this text.
PLUG = Plug(FabDevice("hostdev1", NVME_BDF, 0, bus=bridge_bus(ROOT_PORT), pci_id=NVME,
                      hotplugged=True), ROOT_PORT,
            blocked_reasons=(f"{NVME_BDF}: VFIO migration is not supported in kernel",))
HOST = FakeHost(devices=(FakeDevice(VF, "mlx5_vfio_pci", ALL_FEATURES),
                         FakeDevice(NVME_BDF, "vfio-pci", None)),
                iommus=(IntelUnit("dmar0", ECAP_DIRTY),),
                cmdline="BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on")
#: The real QEMU underneath: q35 (the stand-in presents pcie.0) and a root port to plug into.
QEMU_ARGS = ("-machine", "q35", "-device", f"pcie-root-port,id={ROOT_PORT},chassis=1,addr=5")


#: What the demo says about gamma before the daemon starts, in plain words.
INTRO = (
    f"{NAME} runs a real QEMU (q35, TCG), but its VFIO device is SIMULATED: this machine "
    "has no VFIO hardware.",
    f"  The lab's VFIO stand-in sits between {NAME}'s QMP and the daemon and shows what QEMU "
    f"10.0.2 would with -device vfio-pci,host={VF},id=hostdev0",
    "  (a ConnectX-6 Dx VF with one 32 MiB BAR); a fake host tree has it bound to "
    "mlx5_vfio_pci with DMA logging,",
    f"  and the daemon's [[device_caps]] give its limits ({MAX_RANGES} ranges, 2^{MAX_LOG2} "
    f"bytes). Every line about {NAME} below is what the daemon published.",
)


def device_add_arguments() -> dict[str, object]:
    """The ``device_add`` that plugs ``PLUG`` (what an operator would type)."""
    d = PLUG.device
    return {"driver": d.qom_type, "host": d.host, "id": d.id, "bus": PLUG.bus_name}


@dataclass
class SimulatedVm:
    """gamma running: its QEMU, the stand-in in front of it, the host tree."""

    vm: QemuVm
    standin: StandInThread
    socket: Path  # the stand-in's: the daemon's and the demo's QMP to gamma
    tree: FakeTree

    def host_toml(self) -> str:
        """The ``[host]`` keys that point the daemon at the fake host tree."""
        return (f'sysfs_root = "{self.tree.sysfs}"\ndebugfs_root = "{self.tree.debugfs}"\n'
                f'proc_root = "{self.tree.proc}"\nboot_root = "{self.tree.boot}"\n')

    @staticmethod
    def device_caps_toml() -> str:
        """The VF's DMA-logging limits, as an operator states them."""
        return (f'[[device_caps]]\nbdf = "{VF}"\nmax_ranges = {MAX_RANGES}\n'
                f"max_log2_address_space = {MAX_LOG2}\n")


@contextmanager
def simulated_vm(guest: GuestImage, work: Path, rate_mib: int, wss_mib: int
                 ) -> Iterator[SimulatedVm]:
    """Boot gamma, put the stand-in in front of its QMP, build the host tree; stop all."""
    run = Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))  # AF_UNIX paths are short
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, run, ignore_errors=True)
        spec = QemuSpec(NAME, rate_mib=rate_mib, wss_mib=wss_mib,
                        qmp_servers=(run / "qemu.sock",), extra_args=QEMU_ARGS)
        vm = QemuVm(spec, guest, work).start()
        stack.callback(vm.stop)
        vm.wait_qmp()
        standin = StandInThread(run / "qemu.sock")
        stack.callback(standin.close)
        standin.serve(run / f"{NAME}.sock", SCENARIO, (PLUG,))
        tree = build(work / "host", HOST)
        yield SimulatedVm(vm, standin, run / f"{NAME}.sock", tree)
        if standin.failures:
            raise DemoError(f"the VFIO stand-in could not play QEMU: {standin.failures}")

