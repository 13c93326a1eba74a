"""Unpacking a downloaded archive into a directory, all at once or not at all.

Members are written into a temporary sibling that replaces the output only when every member is out,
so an interrupted or failed extraction never looks complete. Members that would land outside the
output (absolute paths, ``..``, links pointing out) are refused, as Python's ``data`` filter does.
"""

from __future__ import annotations

import lzma
import tarfile
import zipfile
import zlib
from pathlib import Path

from mmcl.core.io import atomic_path
from mmcl.data.records import DataError


def extract(archive: Path, kind: str, out: Path, fix: str) -> None:
    """Unpack ``archive`` (``zip`` or ``tar``, any compression) into ``out``; ``fix`` says how to get a
    good copy when it is truncated or corrupt."""
    with atomic_path(out) as tmp:
        tmp.mkdir()
        try:
            if kind == "zip":
                with zipfile.ZipFile(archive) as members:
                    members.extractall(tmp)
            else:
                with tarfile.open(archive, "r:*") as members:
                    members.extractall(tmp, filter="data")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise  # the disk, not the archive (atomic_path reports a full disk); bad streams have no errno
            reason = str(err) or type(err).__name__
            raise DataError(
                f"{archive}: cannot unpack this {kind} archive ({reason}), it is truncated or corrupt; {fix}"
            ) from None
        if not any(tmp.iterdir()):
            raise DataError(f"{archive}: the {kind} archive is empty; {fix}")
