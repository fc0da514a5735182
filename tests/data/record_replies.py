#!/usr/bin/env python3
"""Record real QMP replies and events from the installed QEMU into ``tests/data/qemu-<ver>/``.

Not part of the test suite: run it by hand when the QEMU the project targets changes,
then re-run the unit tests (``tests/unit/test_translate_*.py`` read the files)::

    .venv/bin/python tests/data/record_replies.py            # writes tests/data/qemu-<ver>/
    .venv/bin/python tests/data/record_replies.py --out DIR  # somewhere else

What it does (about 30 s, TCG, no root, nothing but the standard library):

1. writes a 512-byte boot sector (source below) that switches to 32-bit protected
   mode and keeps writing one word per page over guest physical 16..48 MiB, so that
   the guest really dirties memory (``ram.dirty-pages-rate`` and ``dirty-rate`` are
   then non-zero, which a guest sitting in the firmware would not give);
2. starts ``qemu-system-x86_64 -accel tcg -m 128 -display none -S -qmp
   unix:SOCK,server=on,wait=off`` (plus ``-name`` and that boot disk) and talks raw
   QMP over the socket: greeting, ``qmp_capabilities``, then commands;
3. records the identity/info queries (``prelaunch``), ``cont``, then ``query-dirty-rate``
   before and after ``calc-dirty-rate`` (page-sampling and dirty-bitmap, 500 ms windows
   with ``calc-time-unit: millisecond``);
4. turns on capability ``events`` and records three migrations to ``exec:``:
   one that fails (``exec:false``), one cancelled with ``migrate_cancel``, and one
   slowed by ``max-bandwidth`` whose ``query-migrate`` is snapshotted several times
   before the limits are lifted so that it completes;
5. stores every event seen (MIGRATION, MIGRATION_PASS, STOP, RESUME...) one file each.

File layout: ``<command>.<label>.json`` holds exactly the ``return`` member of the
reply; ``event.<n>.<EVENT>[.<status>].json`` holds the whole event message;
``greeting.json`` the greeting; ``error.<label>.json`` a whole error reply.
``index.json`` lists every file with the command and arguments that produced it.

Boot sector source (``as --32``, ``ld -m elf_i386 -Ttext 0x7c00 --oformat binary``)::

    .code16
    _start: cli; xorw %ax,%ax; movw %ax,%ds; lgdt gdt_desc
            movl %cr0,%eax; orl $1,%eax; movl %eax,%cr0; ljmp $0x08,$pm
    .code32
    pm:     movw $0x10,%ax; movw %ax,%ds; movw %ax,%es; movw %ax,%ss; movl $1,%ebx
    outer:  movl $0x01000000,%edi
    inner:  movl %ebx,(%edi); addl $4096,%edi
            movl $2000,%ecx
    delay:  loop delay
            cmpl $0x03000000,%edi; jb inner
            incl %ebx; jmp outer
    .p2align 3
    gdt:    .quad 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
    gdt_desc: .word gdt_desc - gdt - 1; .long gdt
    . = _start + 510; .byte 0x55, 0xaa
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BOOT_SECTOR_CODE = bytes.fromhex(
    "fa31c08ed80f0116607c0f20c06683c8010f22c0ea197c080066b810008ed88ec08ed0bb01000000"
    "bf00000001891f81c700100000b9d0070000e2fe81ff0000000372e943ebe1900000000000000000"
    "ffff0000009acf00ffff00000092cf001700487c0000"
)


def boot_sector() -> bytes:
    """The 512-byte dirtier boot sector described in the module docstring."""
    return BOOT_SECTOR_CODE.ljust(510, b"\0") + b"\x55\xaa"


class RawQmp:
    """A minimal QMP client: one JSON document per line, events kept in order."""

    def __init__(self, path: Path, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(timeout_s)
        self.file = self.sock.makefile("rwb")
        self.events: list[dict[str, Any]] = []
        self.greeting = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise EOFError("QEMU closed the QMP socket")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command; return the whole reply (``return`` or ``error``)."""
        req: dict[str, Any] = {"execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        self.file.write(json.dumps(req).encode() + b"\n")
        self.file.flush()
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            return msg

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Recorder:
    """Runs commands and writes their replies under ``out``."""

    def __init__(self, qmp: RawQmp, out: Path) -> None:
        self.qmp = qmp
        self.out = out
        self.index: dict[str, dict[str, Any]] = {}

    def _write(self, name: str, value: object, source: dict[str, Any]) -> None:
        (self.out / name).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
        self.index[name] = source
        print(f"  {name}", file=sys.stderr)

    def record(
        self, command: str, label: str, arguments: dict[str, Any] | None = None
    ) -> Any:
        """Run ``command`` and store its ``return`` as ``<command>.<label>.json``."""
        reply = self.qmp.call(command, arguments)
        if "return" not in reply:
            raise RuntimeError(f"{command} {arguments}: {reply}")
        self._write(f"{command}.{label}.json", reply["return"],
                    {"command": command, "arguments": arguments})
        return reply["return"]

    def run(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` without storing the reply; fail on an error reply."""
        reply = self.qmp.call(command, arguments)
        if "return" not in reply:
            raise RuntimeError(f"{command} {arguments}: {reply}")
        return reply["return"]

    def record_error(self, command: str, label: str, arguments: dict[str, Any]) -> None:
        reply = self.qmp.call(command, arguments)
        if "error" not in reply:
            raise RuntimeError(f"{command} {arguments} was expected to fail: {reply}")
        self._write(f"error.{label}.json", reply, {"command": command, "arguments": arguments})

    def wait_migration(self, statuses: set[str], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info: dict[str, Any] = self.run("query-migrate")
            if info.get("status") in statuses:
                return info
            time.sleep(0.05)
        raise TimeoutError(f"migration did not reach {statuses}")

    def save_events(self) -> None:
        for n, ev in enumerate(self.qmp.events):
            status = ev.get("data", {}).get("status")
            name = f"event.{n:02d}.{ev['event']}" + (f".{status}" if status else "") + ".json"
            self._write(name, ev, {"event": ev["event"]})
        self._write("index.json", self.index, {})


def record_info(rec: Recorder) -> None:
    """Identity and info queries while paused (``-S``), then ``cont``."""
    rec._write("greeting.json", rec.qmp.greeting, {"greeting": True})
    rec.run("qmp_capabilities")
    for command in ("query-version", "query-name", "query-uuid", "query-kvm",
                    "query-cpus-fast", "query-memory-size-summary"):
        rec.record(command, "tcg")
    rec.record("qom-get", "machine-type", {"path": "/machine", "property": "type"})
    rec.record("query-status", "prelaunch")
    rec.record("query-migrate-capabilities", "default")
    rec.record("query-migrate", "none")
    rec.run("cont")
    time.sleep(1.0)
    rec.record("query-status", "running")


def record_dirty_rate(rec: Recorder) -> None:
    """``query-dirty-rate`` before any measurement, while measuring, measured."""
    in_ms = {"calc-time-unit": "millisecond"}
    rec.record("query-dirty-rate", "unstarted", in_ms)
    for mode in ("page-sampling", "dirty-bitmap"):
        args: dict[str, Any] = {"calc-time": 500, "calc-time-unit": "millisecond", "mode": mode}
        if mode == "page-sampling":
            args["sample-pages"] = 512
        rec.run("calc-dirty-rate", args)
        rec.record("query-dirty-rate", f"{mode}.measuring", in_ms)
        if mode == "page-sampling":
            rec.record_error("calc-dirty-rate", "calc-dirty-rate.already-measuring", args)
        deadline = time.monotonic() + 10
        while rec.run("query-dirty-rate", in_ms)["status"] != "measured":
            if time.monotonic() > deadline:
                raise TimeoutError(f"calc-dirty-rate {mode} never measured")
            time.sleep(0.1)
        rec.record("query-dirty-rate", f"{mode}.measured", in_ms)
    rec.record("query-dirty-rate", "dirty-bitmap.measured.seconds")


def record_failed_and_cancelled(rec: Recorder) -> None:
    """Events on; a migration that fails (``exec:false``) and one cancelled."""
    rec.run("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    rec.record("query-migrate-capabilities", "events-on")
    rec.run("migrate", {"uri": "exec:false"})
    rec.wait_migration({"failed", "completed"}, 30)
    rec.record("query-migrate", "failed")

    rec.run("migrate-set-parameters", {"max-bandwidth": 2 * 1024 * 1024})
    rec.run("migrate", {"uri": "exec:cat > /dev/null"})
    rec.wait_migration({"active"}, 30)
    rec.run("migrate_cancel")
    rec.record("query-migrate", "cancelling-or-cancelled")
    rec.wait_migration({"cancelled"}, 30)
    rec.record("query-migrate", "cancelled")


def record_completed(rec: Recorder) -> None:
    """A migration slowed to 16 MiB/s, snapshotted, then let converge."""
    rec.run("migrate-set-parameters", {"max-bandwidth": 16 * 1024 * 1024})
    rec.run("migrate", {"uri": "exec:cat > /dev/null"})
    rec.record("query-migrate", "setup")
    snapshots = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and snapshots < 8:
        time.sleep(0.6)
        info = rec.record("query-migrate", f"active-{snapshots}")
        snapshots += 1
        if info.get("ram", {}).get("dirty-pages-rate", 0) > 0 and snapshots >= 5:
            break
    # Let it converge: no bandwidth limit, a generous downtime limit.
    rec.run("migrate-set-parameters", {"max-bandwidth": 64 * 1024 * 1024 * 1024,
                                       "downtime-limit": 10000})
    rec.wait_migration({"completed", "failed"}, 60)
    rec.record("query-migrate", "completed")
    rec.record("query-status", "postmigrate")


def record_all(rec: Recorder) -> None:
    record_info(rec)
    record_dirty_rate(rec)
    record_failed_and_cancelled(rec)
    record_completed(rec)
    rec.save_events()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: tests/data/qemu-<version of --qemu>")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qmpdirty-rec-") as tmp:
        sock = Path(tmp) / "qmp.sock"
        disk = Path(tmp) / "boot.img"
        disk.write_bytes(boot_sector())
        argv = [opts.qemu, "-accel", "tcg", "-m", "128", "-display", "none", "-S",
                "-name", "qmpdirty-rec", "-nodefaults", "-no-user-config",
                "-drive", f"file={disk},format=raw,if=ide,snapshot=on",
                "-qmp", f"unix:{sock},server=on,wait=off"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        try:
            qmp = RawQmp(sock)
            q = qmp.greeting["QMP"]["version"]["qemu"]
            out = opts.out or Path(__file__).parent / f"qemu-{q['major']}.{q['minor']}.{q['micro']}"
            out.mkdir(parents=True, exist_ok=True)
            for old in out.glob("*.json"):
                old.unlink()
            print(f"recording {' '.join(argv)} into {out}", file=sys.stderr)
            rec = Recorder(qmp, out)
            record_all(rec)
            qmp.call("quit")
            qmp.close()
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
