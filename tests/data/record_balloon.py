#!/usr/bin/env python3
"""Record the replies the forecast reads of a VM's memory into ``tests/data/qemu-<ver>-balloon/``.

Not part of the test suite: run it by hand when the QEMU the project targets changes
(about 15 s, TCG, no root)::

    .venv/bin/python tests/data/record_balloon.py

``record_replies.py``'s boot-sector guest has no virtio-balloon driver, so this uses the
lab's Linux guest (``qmpdirty.demo.lab``) with ``balloon=True``: a ``virtio-balloon-pci``
with id ``balloon0`` and the guest's driver loaded. It records, each reply's ``return``
member in ``<command>.<label>.json`` (whole error replies in ``error.<label>.json``):

* ``query-migrate-parameters.default``: nothing set (QEMU's default ``max-bandwidth``);
* ``query-balloon.balloon`` and ``error.query-balloon.no-balloon`` (a VM without one);
* ``qom-list.peripheral``: ``/machine/peripheral`` with the balloon in it;
* ``qom-get.guest-stats.no-driver``: a balloon whose guest has no driver (nothing
  reported: every stat 2^64-1, ``last-update`` 0);
* ``qom-get.guest-stats.at-boot``: what the driver reported once when it loaded, before
  ``guest-stats-polling-interval`` is set (it does not report again until it is), and
  ``qom-get.guest-stats.reported`` two seconds after it was set to 1.

``index.json`` lists every file with the command and arguments that produced it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qmpdirty.demo.lab.control import LabCommandError, QmpControl  # noqa: E402
from qmpdirty.demo.lab.guest import ensure_guest  # noqa: E402
from qmpdirty.demo.lab.qemu import BALLOON_ID, QemuSpec, QemuVm  # noqa: E402

BALLOON = f"/machine/peripheral/{BALLOON_ID}"


def main() -> int:
    guest = ensure_guest(ROOT / ".cache" / "guest")
    work = Path(tempfile.mkdtemp(prefix="qdrec-", dir="/tmp"))
    with_balloon = QemuSpec(name="rec", mem_mib=256, rate_mib=1, wss_mib=8, balloon=True,
                            qmp_servers=(work / "b.sock",))
    without = QemuSpec(name="rec0", mem_mib=128, qmp_servers=(work / "n.sock",))
    no_driver = QemuSpec(name="rec1", mem_mib=128, qmp_servers=(work / "d.sock",),
                         extra_args=("-device", f"virtio-balloon-pci,id={BALLOON_ID}"))
    index: dict[str, Any] = {}
    files: dict[str, Any] = {}

    def record(control: QmpControl, name: str, command: str, **args: Any) -> None:
        try:
            files[name] = control.cmd(command, **args)
        except LabCommandError as exc:
            files[name] = {"error": {"class": exc.error_class, "desc": exc.desc}}
        index[name] = {"command": command, **({"arguments": args} if args else {})}

    with QemuVm(with_balloon, guest, work / "b") as vm, \
            QemuVm(without, guest, work / "n") as bare, \
            QemuVm(no_driver, guest, work / "d") as driverless:
        for each in (vm, bare, driverless):
            each.wait_ready()
        with QmpControl(work / "b.sock") as c, QmpControl(work / "n.sock") as n, \
                QmpControl(work / "d.sock") as nd:
            version = c.cmd("query-version")
            record(c, "query-migrate-parameters.default.json", "query-migrate-parameters")
            record(c, "query-balloon.balloon.json", "query-balloon")
            record(n, "error.query-balloon.no-balloon.json", "query-balloon")
            record(c, "qom-list.peripheral.json", "qom-list", path="/machine/peripheral")
            record(nd, "qom-get.guest-stats.no-driver.json", "qom-get", path=BALLOON,
                   property="guest-stats")
            record(c, "qom-get.guest-stats.at-boot.json", "qom-get", path=BALLOON,
                   property="guest-stats")
            c.cmd("qom-set", path=BALLOON, property="guest-stats-polling-interval", value=1)
            time.sleep(2.0)
            record(c, "qom-get.guest-stats.reported.json", "qom-get", path=BALLOON,
                   property="guest-stats")
    assert isinstance(version, dict)
    q = version["qemu"]
    out = ROOT / "tests" / "data" / f"qemu-{q['major']}.{q['minor']}.{q['micro']}-balloon"
    out.mkdir(exist_ok=True)
    for name, value in files.items():
        (out / name).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    (out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(files)} replies to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
