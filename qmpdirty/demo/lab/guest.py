"""Build (once) and cache the lab's guest: a Debian cloud kernel and a tiny initramfs.

The initramfs holds a static busybox, ``/init`` and ``dirtier``, a program that dirties
guest memory at a rate read from the kernel command line, so that dirty-rate figures
seen over QMP can be checked against a known truth; and the kernel's virtio-balloon
driver with what it needs (``BALLOON_MODULES``), loaded only when the command line
asks (``qmpdirty.balloon=1``), so that QEMU's balloon has guest memory statistics.
Building needs apt-get, dpkg, gcc (+ libc6-dev) and cpio, but no root unless the apt
package lists must be refreshed. The cache key is a hash of the guest sources and of
the recipe: editing ``dirtier.c`` or ``init`` rebuilds. Several processes may call
``ensure_guest`` at once (file lock).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from qmpdirty.demo.lab import DemoError

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
GUEST_SOURCES = ("dirtier.c", "init")
BUSYBOX_APPLETS = ("sh", "mount", "cat", "sleep", "insmod")
#: The cloud kernel builds virtio as modules: these, loaded in this order, give the
#: guest a virtio-balloon driver (``drivers/virtio/``, each after what it depends on).
BALLOON_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
                   "virtio_pci", "virtio_balloon")
READY_MARKER = "qmpdirty-dirtier: ready"
_RECIPE_VERSION = "2"  # bump when the build steps below change what they produce


@dataclass(frozen=True)
class GuestImage:
    """A bootable lab guest: pass ``kernel`` to ``-kernel`` and ``initrd`` to ``-initrd``."""

    kernel: Path
    initrd: Path


def kernel_cmdline(rate_mib: int, wss_mib: int, balloon: bool = False) -> str:
    """The ``-append`` line that makes the guest dirty ``rate_mib`` MiB/s of ``wss_mib`` MiB
    (and, with ``balloon``, load its virtio-balloon driver first)."""
    line = f"console=ttyS0 quiet panic=-1 qmpdirty.rate_mib={rate_mib} qmpdirty.wss_mib={wss_mib}"
    return line + (" qmpdirty.balloon=1" if balloon else "")


def ready_line(rate_mib: int, wss_mib: int) -> str:
    """The line the guest prints on its console once it dirties memory as configured."""
    return f"{READY_MARKER} rate_mib={rate_mib} wss_mib={wss_mib}"


def ensure_guest(cache_dir: Path) -> GuestImage:
    """Return the cached guest for the current sources, building it first if needed."""
    sources = {
        name: (resources.files("qmpdirty.demo.lab") / "guest" / name).read_bytes()
        for name in GUEST_SOURCES
    }
    digest = hashlib.sha256(_RECIPE_VERSION.encode())
    for name, content in sources.items():
        digest.update(f"\0{name}\0{len(content)}\0".encode())
        digest.update(content)
    target = cache_dir / f"guest-{digest.hexdigest()[:16]}"
    image = GuestImage(kernel=target / "vmlinuz", initrd=target / "initrd.gz")
    if target.is_dir():
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        if not target.is_dir():  # another process may have built it while we waited
            with tempfile.TemporaryDirectory(prefix=".build-", dir=cache_dir) as tmp:
                out = Path(tmp) / "out"
                _build(Path(tmp), sources, out)
                out.rename(target)  # atomic: a guest directory is complete or absent
    return image


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(work: Path, sources: dict[str, bytes], out: Path) -> None:
    """Download, extract, compile and pack the guest into ``out``."""
    debs = work / "debs"
    debs.mkdir()
    kernel_package = _download(debs)
    extracted = work / "extracted"
    for deb in sorted(debs.glob("*.deb")):
        _run(
            "extracting " + deb.name, ["dpkg", "-x", str(deb), str(extracted)], hint="install dpkg"
        )
    kernels = sorted((extracted / "boot").glob("vmlinuz-*"))
    busybox = extracted / "bin" / "busybox"
    if not kernels or not busybox.is_file():
        raise DemoError(
            f"guest build: {kernel_package} / {BUSYBOX_PACKAGE} did not contain "
            "/boot/vmlinuz-* and /bin/busybox"
        )

    stage = work / "stage"
    for directory in ("bin", "dev", "proc", "sys", "lib/modules"):
        (stage / directory).mkdir(parents=True)
    for module in BALLOON_MODULES:
        found = sorted(extracted.glob(f"lib/modules/*/kernel/drivers/virtio/{module}.ko"))
        if not found:
            raise DemoError(f"guest build: {kernel_package} has no {module}.ko")
        shutil.copyfile(found[-1], stage / "lib" / "modules" / f"{module}.ko")
    (work / "dirtier.c").write_bytes(sources["dirtier.c"])
    _run(
        "compiling dirtier.c",
        [
            "gcc",
            "-static",
            "-O2",
            "-Wall",
            "-o",
            str(stage / "bin" / "dirtier"),
            str(work / "dirtier.c"),
        ],
        hint="install gcc and libc6-dev (static libc)",
    )
    (stage / "init").write_bytes(sources["init"])
    shutil.copyfile(busybox, stage / "bin" / "busybox")
    for executable in ("init", "bin/busybox", "bin/dirtier"):
        (stage / executable).chmod(0o755)
    for applet in BUSYBOX_APPLETS:
        (stage / "bin" / applet).symlink_to("busybox")

    members = sorted(str(path.relative_to(stage)) for path in stage.rglob("*"))
    archive = _run(
        "packing the initramfs",
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"],
        hint="install cpio",
        cwd=stage,
        stdin="\n".join(members).encode() + b"\n",
    )
    out.mkdir()
    (out / "initrd.gz").write_bytes(gzip.compress(archive, mtime=0))
    shutil.copyfile(kernels[-1], out / "vmlinuz")
    (out / "kernel-package").write_text(kernel_package + "\n")


def _download(debs: Path) -> str:
    """Fetch the cloud kernel and busybox .debs; returns the kernel package's name."""
    try:
        return _download_once(debs)
    except DemoError as first:
        if os.geteuid() != 0:
            raise DemoError(
                f"{first}\nThe apt package lists may be missing or stale: run "
                "`sudo apt-get update` (it needs root), then retry."
            ) from first
    _run(
        "refreshing apt lists (apt-get update)",
        ["apt-get", "update", "-q"],
        hint="check that the Debian mirror is reachable",
    )
    return _download_once(debs)


def _download_once(debs: Path) -> str:
    depends = _run(
        f"resolving {KERNEL_METAPACKAGE}",
        ["apt-cache", "depends", KERNEL_METAPACKAGE],
        hint="this needs a Debian system with apt",
    ).decode(errors="replace")
    match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)\b", depends)
    if match is None:
        raise DemoError(
            f"guest build: `apt-cache depends {KERNEL_METAPACKAGE}` names no "
            f"versioned kernel package:\n{depends.strip()}"
        )
    kernel_package = match.group(1)
    _run(
        "downloading packages",
        ["apt-get", "download", kernel_package, BUSYBOX_PACKAGE],
        hint="check the apt sources and network",
        cwd=debs,
    )
    return kernel_package


def _run(
    step: str,
    argv: Sequence[str],
    *,
    hint: str,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> bytes:
    """Run one build step; any failure becomes a DemoError naming the step and a remedy."""
    try:
        done = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise DemoError(f"guest build: {step}: `{argv[0]}` is not installed ({hint})") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise DemoError(
            f"guest build: {step} failed: `{' '.join(argv)}` exited with "
            f"{done.returncode} ({hint}):\n{output[-2000:]}"
        )
    return done.stdout
