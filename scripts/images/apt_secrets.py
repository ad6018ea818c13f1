"""Write the build machine's apt configuration for an image build: DIR/apt-sources.list and
DIR/apt.conf.

    python3 scripts/images/apt_secrets.py DIR

apt inside a build reaches the Debian archive the way apt on the build machine does, as
pip does through pip_secrets.py. The sources are the archives the machine's apt has
indexes for (``apt-get indextargets``: the mirror its sources name, whatever their
format), one ``deb URI SUITE COMPONENTS`` line each, without the machine's keyring
paths: the image checks them with its own Debian archive keys. The settings are the
machine's ``Acquire`` settings (``apt-config dump``: proxies, release-file validity
checks), without the entries that describe the machine rather than how it reaches the
mirror. Dockerfile.cassandra-standin mounts both as build
secrets ("apt-sources.list", "apt.conf") and keeps only the lines of its own base's
suite, so no layer keeps them. A machine without apt writes empty files (the base's own
sources are used). Both files are readable by their owner only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# What describes the machine's own apt (its index targets, cdrom, changelog servers,
# decompressors: apt's built-in lists), not how it reaches the mirror.
SKIPPED_SETTINGS = (
    "Acquire::IndexTargets",
    "Acquire::cdrom",
    "Acquire::Changelogs",
    "Acquire::CompressionTypes",
)


def apt_output(*args: str) -> str:
    if shutil.which("apt-get") is None:
        return ""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else ""


def source_lines() -> list[str]:
    """``deb URI SUITE COMPONENT...`` per archive and suite, in apt's order."""
    listed = apt_output(
        "apt-get",
        "indextargets",
        "--format",
        "$(REPO_URI) $(RELEASE) $(COMPONENT)",
        "Created-By: Packages",
    )
    archives: dict[tuple[str, str], list[str]] = {}
    for line in listed.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        uri, suite, component = fields
        components = archives.setdefault((uri, suite), [])
        if component not in components:
            components.append(component)
    return [f"deb {uri} {suite} {' '.join(c)}" for (uri, suite), c in archives.items()]


def acquire_settings() -> list[str]:
    """The machine's ``Acquire::`` settings as apt.conf lines (``Key "value";``)."""
    dumped = apt_output("apt-config", "dump", "--format", "%f %v%n", "Acquire")
    lines = []
    for line in dumped.splitlines():
        key, _, value = line.partition(" ")
        if not value or key.startswith(SKIPPED_SETTINGS) or not key.startswith("Acquire::"):
            continue
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key} "{escaped}";')
    return lines


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    files = {
        out / "apt-sources.list": source_lines(),
        out / "apt.conf": acquire_settings(),
    }
    for path, lines in files.items():
        path.write_text("".join(f"{line}\n" for line in lines))
        os.chmod(path, 0o600)


if __name__ == "__main__":
    main()
