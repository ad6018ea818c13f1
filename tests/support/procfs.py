"""Processes and their sockets as /proc shows them (Linux), for the tests and benchmarks
that watch the servers they start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (field 3 first), or None
    if the process is gone."""
    try:
        return stat.read_text().rpartition(")")[2].split()
    except OSError:
        return None


def processes() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None:
            yield int(stat.parent.name), int(fields[1])


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes, in increasing order."""
    return sorted(child for child, parent in processes() if parent == pid)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) ``pid`` has used; 0 if it is gone."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    if fields is None:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def established_connections(port: int, pids: list[int]) -> list[int]:
    """How many established TCP connections to local ``port`` each of ``pids`` holds."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rpartition(":")[2], 16)
        if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
            established.add(f"socket:[{fields[9]}]")
    return [
        sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if _link(fd) in established)
        for pid in pids
    ]


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""  # closed meanwhile
