"""``gather_topology`` on the real QEMU 10.0.2 (TCG, stopped with ``-S``: no guest runs).

This machine has no VFIO devices, so ``virtio-net-pci`` devices stand in for them
(``device_types``): they exercise the same reads, bus walk and realize ordering, and
every VFIO property answers QEMU's real "Property ... not found" (-> None).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from qmpdirty.config.address import QmpAddress
from qmpdirty.demo.lab.control import QmpControl, query_migrate
from qmpdirty.demo.lab.daemon_process import sock
from qmpdirty.demo.lab.qemu import QemuSpec, QemuVm
from qmpdirty.facts.topology import VFIO_TYPES, MemoryDevice, Viommu, VmTopology
from qmpdirty.qmp.commands import CommandPolicy
from qmpdirty.qmp.gather import TopologyReader, gather_topology
from qmpdirty.qmp.session import QmpSession

pytestmark = pytest.mark.system

STAND_IN = VFIO_TYPES | {"virtio-net-pci"}
MIB = 2**20
LabVm = Callable[[QemuSpec], QemuVm]


class CountingSession(QmpSession):
    """Counts commands and sequential waves (a wave starts when nothing is in flight)."""

    calls = 0
    waves = 0
    seconds = 0.0  # spent in gather_topology (set by ``gather``)
    _in_flight = 0

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None,
                      timeout_s: float | None = None) -> object:
        self.calls += 1
        self.waves += self._in_flight == 0
        self._in_flight += 1
        try:
            return await super().execute(command, arguments, timeout_s)
        finally:
            self._in_flight -= 1


def start(lab_vm: LabVm, tmp_path: Path, name: str, *args: str, mem_mib: int = 256
          ) -> tuple[QemuVm, Path]:
    """A stopped q35 with a QMP socket for the gatherer and one for the test's control."""
    gather_sock, control_sock = sock(tmp_path, f"{name}-g"), sock(tmp_path, f"{name}-c")
    vm = lab_vm(QemuSpec(name=name, mem_mib=mem_mib, qmp_servers=(gather_sock, control_sock),
                         extra_args=("-S", "-machine", "q35", *args)))
    vm.wait_qmp()
    return vm, gather_sock


async def gather(path: Path, device_types: frozenset[str] = STAND_IN
                 ) -> tuple[VmTopology, CountingSession]:
    session = await CountingSession.open(
        QmpAddress("unix", path), policy=CommandPolicy(enable_migration_events=False,
                                                       measure_dirty_rate=False),
        command_timeout_s=10.0, connect_timeout_s=10.0, event_queue_size=100, label="topo")
    assert isinstance(session, CountingSession)
    try:
        began = time.perf_counter()
        topology = await gather_topology(session, device_types=device_types)
        session.seconds = time.perf_counter() - began
        return topology, session
    finally:
        await session.close()


async def test_intel_iommu_and_a_bypassing_pxb(lab_vm: LabVm, tmp_path: Path) -> None:
    _, path = start(
        lab_vm, tmp_path, "topo-a",
        "-device", "intel-iommu,caching-mode=on,aw-bits=48",
        "-device", "pxb-pcie,id=pxb1,bus_nr=10,bypass_iommu=true",
        "-device", "pcie-root-port,id=rpx,bus=pxb1,chassis=1",
        "-device", "virtio-net-pci,id=behind_pxb,bus=rpx",
        "-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=2",
        "-device", "virtio-net-pci,id=behind_rp0,bus=rp0",
        "-device", "virtio-net-pci,bus=pcie.0")
    topology, _ = await gather(path)
    assert [(d.id, d.bus, d.pci_addr, d.root_bus_bypass_iommu, d.realize_index)
            for d in topology.devices] == [
        ("behind_pxb", "/machine/peripheral/rpx/rpx", "00.0", True, 0),
        ("behind_rp0", "/machine/peripheral/rp0/rp0", "00.0", False, 1),
        (None, "/machine/q35/pcie.0", "03.0", False, 2),
    ]
    assert all(d.host is None and d.enable_migration is None for d in topology.devices)
    assert topology.viommus == (Viommu("/machine/peripheral-anon/device[0]", "intel-iommu",
                                       aw_bits=48, caching_mode=True, dma_translation=True),)
    assert topology.basics.machine == "pc-q35-10.0"
    # no VFIO device on this VM: with the real types the gatherer finds none
    assert (await gather(path, VFIO_TYPES))[0].devices == ()


@pytest.mark.parametrize("default_bypass", [False, True])
async def test_virtio_iommu(lab_vm: LabVm, tmp_path: Path, default_bypass: bool) -> None:
    machine_opt = "q35,default-bus-bypass-iommu=on" if default_bypass else "q35"
    _, path = start(lab_vm, tmp_path, "topo-b", "-machine", machine_opt,
                    "-device", "virtio-iommu-pci,id=viommu0",
                    "-device", "virtio-net-pci,id=nic0,bus=pcie.0")
    topology, _ = await gather(path)
    # q35 overrides virtio-iommu's aw-bits default (64) with 39
    assert topology.viommus == (Viommu("/machine/peripheral/viommu0", "virtio-iommu-pci",
                                       aw_bits=39),)
    assert [(d.id, d.root_bus_bypass_iommu) for d in topology.devices] == [
        ("nic0", default_bypass)]


async def test_virtio_mem_device_and_its_region(lab_vm: LabVm, tmp_path: Path) -> None:
    _, path = start(lab_vm, tmp_path, "topo-c", "-m", "256M,maxmem=1G,slots=2",
                    "-object", "memory-backend-ram,id=mem1,size=512M",
                    "-device", "virtio-mem-pci,memdev=mem1,id=vmem0,requested-size=128M")
    # the memory map is gathered for VMs with VFIO devices: let virtio-mem stand in for one
    topology, _ = await gather(path, frozenset({"virtio-mem-pci"}))
    assert topology.basics.base_ram_bytes == 256 * MIB
    (vmem,) = topology.memory_devices
    assert topology.basics.plugged_ram_bytes == vmem.size  # stopped: nothing plugged yet
    assert vmem == MemoryDevice("virtio-mem", "vmem0", vmem.addr, 0, 512 * MIB, "/objects/mem1")
    assert vmem.addr is not None and vmem.addr >= 4 * 1024 * MIB  # device memory above 4G
    assert topology.flat_view is not None and topology.flat_view_source == "info mtree -f -o"
    region = [s for s in topology.flat_view if s.name == "mem1"]
    assert [(s.start, s.end, s.kind, s.owner) for s in region] == [
        (vmem.addr, vmem.addr + 512 * MIB - 1, "ram", "/objects/mem1")]


async def test_hot_plugged_device_has_a_later_realize_index(
    lab_vm: LabVm, tmp_path: Path
) -> None:
    vm, path = start(lab_vm, tmp_path, "topo-d",
                     "-device", "pcie-root-port,id=rp_hot,bus=pcie.0,chassis=1,addr=2.0",
                     "-device", "pcie-root-port,id=rp_anon,bus=pcie.0,chassis=2,addr=3.0",
                     "-device", "pcie-root-port,id=rp_cold,bus=pcie.0,chassis=3,addr=4.0",
                     "-device", "virtio-net-pci,id=cold0,bus=rp_cold")
    before, _ = await gather(path)
    assert [(d.id, d.realize_index) for d in before.devices] == [("cold0", 0)]
    control = QmpControl(vm.spec.control_address)
    try:
        control.cmd("device_add", driver="virtio-net-pci", id="hot0", bus="rp_hot")
        control.cmd("device_add", driver="virtio-net-pci", bus="rp_anon")
    finally:
        control.close()
    after, _ = await gather(path)
    # both sit at lower slots than cold0's root port, yet were realized after it
    assert [(d.qom_path, d.realize_index) for d in after.devices] == [
        ("/machine/peripheral/cold0", 0), ("/machine/peripheral/hot0", 1),
        ("/machine/peripheral-anon/device[0]", 2)]


async def test_vvfat_blocker_is_quoted_verbatim(lab_vm: LabVm, tmp_path: Path) -> None:
    fat = tmp_path / "fat"
    fat.mkdir()
    (fat / "hello.txt").write_text("hello\n")
    vm, path = start(lab_vm, tmp_path, "topo-e",
                     "-drive", f"file=fat:rw:{fat},format=raw,if=none,id=v0",
                     "-device", "virtio-blk-pci,drive=v0,id=blk0")
    topology, _ = await gather(path)
    control = QmpControl(vm.spec.control_address)
    try:
        observed = query_migrate(control)["blocked-reasons"]
    finally:
        control.close()
    assert topology.blocked_reasons == tuple(observed)
    assert any(r.startswith("The vvfat (rw) format used by node '") and
               r.endswith("' does not support live migration") for r in observed)


async def test_round_trips_and_time_on_a_ten_device_q35(
    lab_vm: LabVm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """~10 devices: intel-iommu, 4 root ports each with a NIC, 2 NICs on pcie.0, virtio-mem."""
    args = ["-m", "256M,maxmem=1G,slots=2", "-device", "intel-iommu,caching-mode=on",
            "-object", "memory-backend-ram,id=mem1,size=128M",
            "-device", "virtio-mem-pci,memdev=mem1,id=vmem0,requested-size=0"]
    for i in range(4):
        args += ["-device", f"pcie-root-port,id=rp{i},bus=pcie.0,chassis={i + 1}",
                 "-device", f"virtio-net-pci,id=nic{i},bus=rp{i}"]
    args += ["-device", "virtio-net-pci,bus=pcie.0", "-device", "virtio-net-pci,bus=pcie.0"]
    _, path = start(lab_vm, tmp_path, "topo-f", *args)
    results = {}
    for label, types in (("VFIO types", VFIO_TYPES), ("6 NICs as VFIO", STAND_IN)):
        topology, session = await gather(path, types)
        results[label] = (len(topology.devices), session.calls, session.waves, session.seconds)
    with capsys.disabled():
        for label, (found, calls, waves, took) in results.items():
            print(f"\n  gather_topology, {label}: {found} devices, {calls} commands in "
                  f"{waves} waves, {took * 1000:.1f} ms")
    # 9 in the first wave (version, 4 containers, migrate, memory size, type, iommu);
    # a VM without VFIO devices skips the memory map (query-pci, query-memory-devices,
    # info mtree), then the vIOMMU's 3 properties. With VFIO devices: the memory map
    # (3) in the second wave, + 11 properties per NIC, then one wave of bus owners (4
    # root ports and /machine/q35, 3 properties each); their buses end at q35
    assert results["VFIO types"][:3] == (0, 9 + 3, 2)
    assert results["6 NICs as VFIO"][:3] == (6, 9 + 3 + 3 + 6 * 11 + 5 * 3, 4)
    assert all(took < 2.0 for *_, took in results.values())


async def test_reader_refreshes_cheaply_until_a_device_or_an_object_comes(
    lab_vm: LabVm, tmp_path: Path
) -> None:
    """Without VFIO devices a refresh is the three run-time containers + query-migrate;
    a hot-plugged device (here a stand-in) or a new object brings back the full gather,
    a VM with such devices always gathers in full, and a full read can be forced."""
    vm, path = start(lab_vm, tmp_path, "topo-r",
                     "-device", "pcie-root-port,id=rp_hot,bus=pcie.0,chassis=1,addr=2.0")
    session = await CountingSession.open(
        QmpAddress("unix", path), policy=CommandPolicy(enable_migration_events=False,
                                                       measure_dirty_rate=False),
        command_timeout_s=10.0, connect_timeout_s=10.0, event_queue_size=100, label="topo")
    assert isinstance(session, CountingSession)
    reader = TopologyReader(session, device_types=STAND_IN)
    control = QmpControl(vm.spec.control_address)

    async def calls_of_a_read(full: bool = False) -> tuple[int, VmTopology]:
        before = session.calls
        topology = await reader.read(full=full)
        return session.calls - before, topology

    try:
        first_calls, first = await calls_of_a_read()
        assert first_calls == 9 + 0  # no vIOMMU: nothing else to read
        again_calls, again = await calls_of_a_read()
        assert (again_calls, again) == (4, first)
        assert (await calls_of_a_read(full=True))[0] == first_calls
        control.cmd("object-add", **{"qom-type": "memory-backend-ram", "id": "m9",
                                     "size": 4 * MIB})
        assert (await calls_of_a_read())[0] == 4 + first_calls  # noticed, then in full
        control.cmd("device_add", driver="virtio-net-pci", id="hot0", bus="rp_hot")
        hot_calls, hot = await calls_of_a_read()
        assert hot_calls > 4 + first_calls and [d.id for d in hot.devices] == ["hot0"]
        assert "/machine/peripheral/hot0" in {c.path for c in reader.peripherals}
        assert (await calls_of_a_read())[0] > 4  # devices present: always in full
    finally:
        control.close()
        await session.close()
