"""Write the real node's sandbox ("pause") image as a docker-archive tar.

    python scripts/cluster/pause_image.py OUT.tar [--busybox /bin/busybox]

Every pod's sandbox container runs this image: it holds the pod's namespaces and
sleeps until it is told to stop. No registry reachable here serves the upstream
``registry.k8s.io/pause`` image, so this one is made from Debian's ``busybox-static``
(one static binary, no libraries) and imported with ``ctr images import``. The
archive is deterministic: the same busybox gives the same image ID.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

IMAGE = "localhost/mnist-pause:busybox"
# PID 1 ignores signals it has no handler for: trap TERM so the sandbox stops at once.
ENTRYPOINT = [
    "/bin/busybox", "sh", "-c",
    "trap 'exit 0' TERM INT; while :; do /bin/busybox sleep 3600 & wait $!; done",
]  # fmt: skip


def _layer(busybox: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo("bin")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        data = busybox.read_bytes()
        binary = tarfile.TarInfo("bin/busybox")
        binary.size = len(data)
        binary.mode = 0o755
        tar.addfile(binary, io.BytesIO(data))
    return buffer.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_archive(out: Path, busybox: Path) -> str:
    """Write the archive; return the image ID (the config's digest)."""
    layer = _layer(busybox)
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ENTRYPOINT, "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        },
        sort_keys=True,
    ).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = [
        {"Config": f"{config_id}.json", "RepoTags": [IMAGE], "Layers": [f"{layer_id}/layer.tar"]}
    ]
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _file(tar, f"{layer_id}/layer.tar", layer)
        _file(tar, f"{config_id}.json", config)
        _file(tar, "manifest.json", json.dumps(manifest).encode())
    tmp.rename(out)
    return f"sha256:{config_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--busybox", type=Path, default=Path("/bin/busybox"))
    args = parser.parse_args(argv)
    print(write_archive(args.out, args.busybox))
    return 0


if __name__ == "__main__":
    sys.exit(main())
