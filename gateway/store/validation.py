"""What every store checks before it writes: a malformed record is a bug, never data.

Both stores validate the whole batch before writing any of it, which is also what keeps
``save_many`` all-or-nothing when one record of a request is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.base import PredictionRecord
from mnist_contract import IMAGE_SIDE, NUM_CLASSES

IMAGE_BYTES = IMAGE_SIDE * IMAGE_SIDE


def check_records(records: Sequence[PredictionRecord]) -> None:
    """Raise ``ValueError`` naming the first record that breaks the record contract."""
    for record in records:
        problem = _problem(record)
        if problem:
            raise ValueError(f"prediction {record.id}: {problem}")


def _problem(record: PredictionRecord) -> str | None:
    if record.id.version != 1:
        return "id must be a time-based (version 1) UUID"
    if record.created_at.tzinfo is None:
        return "created_at must be timezone-aware"
    if len(record.input_image) != IMAGE_BYTES:
        return f"input_image must be {IMAGE_BYTES} bytes, got {len(record.input_image)}"
    if len(record.probabilities) != NUM_CLASSES:
        return f"probabilities must have {NUM_CLASSES} values, got {len(record.probabilities)}"
    if not 0 <= record.digit < NUM_CLASSES:
        return f"digit must be 0-9, got {record.digit}"
    if record.label is not None and not 0 <= record.label < NUM_CLASSES:
        return f"label must be 0-9, got {record.label}"
    return None
