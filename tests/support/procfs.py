"""Processes as /proc shows them (Linux), for the tests and benchmarks that watch the
servers they start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def processes() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        yield int(stat.parent.name), int(fields[1])


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes, in increasing order."""
    return sorted(child for child, parent in processes() if parent == pid)
