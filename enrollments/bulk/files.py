"""The bulk directory: uploads kept until their job has read them, and export files.

Every file is the job owner's data (keys included, maybe), so each is readable by the portal's
user only. How long they are kept is :mod:`enrollments.bulk.retention`'s business.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from enrollments.models import BulkJob


def bulk_dir() -> Path:
    """Return the bulk directory (settings.BULK_DIR), created if missing."""
    path = Path(settings.BULK_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_store(upload: Any, *, max_bytes: int) -> tuple[Path, int]:
    """Copy an uploaded file to the bulk directory chunk by chunk; refuse it over ``max_bytes``."""
    path = bulk_dir() / f"upload-{uuid.uuid4().hex}.csv"
    size = 0
    try:
        with path.open("wb") as out:
            for chunk in _chunks(upload):
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(
                        f"The file is larger than the limit of {max_bytes // (1024 * 1024):,} "
                        "MB; split it."
                    )
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)
    return path, size


def _chunks(upload: Any) -> Any:
    """Return an iterator of ``upload``'s bytes: Django's chunks, or reads of a plain file."""
    if hasattr(upload, "chunks"):
        return upload.chunks()
    return iter(lambda: upload.read(1 << 20), b"")


def result_file_move(job: BulkJob, tmp: Path) -> Path:
    """Move a finished export from ``tmp`` to its final name in the bulk directory."""
    final = bulk_dir() / f"export-{job.pk}-{uuid.uuid4().hex[:8]}.csv"
    shutil.move(str(tmp), final)
    os.chmod(final, 0o600)
    return final
