"""Which version of an object a run read: what a plan pins, and what is checked again before a
transfer copies and before it publishes.

Local files: size, modification time in nanoseconds and inode (a file replaced by a rename gets a
new inode even when size and time agree). Object stores: size plus what the store versions an
object by: S3's ETag (and VersionId on versioned buckets), GCS's generation, always asked of the store
(never from the filesystem's cached listing, which another writer's replacement leaves stale). Other
filesystems: size plus whichever of those fields, or a modification time, their ``info`` reports.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputNotFoundError, StorageError
from .locations import Location, is_transient

__all__ = ["object_version"]

# fsspec ``info`` fields that change when an object is written again, by the name a version records.
_VERSION_FIELDS = {"ETag": "etag", "etag": "etag", "VersionId": "version_id", "generation": "generation",
                   "mtime": "mtime", "LastModified": "mtime", "updated": "mtime", "created": "created"}


def object_version(loc: Location) -> dict[str, Any]:
    """The version of the object at ``loc`` (see the module's docstring): a small dict of strings and ints
    that compares equal only for the same version. Raises :class:`InputNotFoundError` when it is gone and
    :class:`StorageError` when it cannot be asked."""
    try:
        if loc.is_local:
            st = os.stat(loc.path)
            return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
        loc.fs.invalidate_cache(loc.path)  # asked of the store: a listing cached since (s3fs') is no version
        info = loc.fs.info(loc.path)
    except FileNotFoundError:
        raise InputNotFoundError(f"{loc.url} does not exist") from None
    except (OSError, PermissionError) as exc:
        raise StorageError(f"cannot read the version of {loc.url}: {exc}", is_transient(exc)) from None
    version: dict[str, Any] = {"size": int(info.get("size") or 0)}
    for field, name in _VERSION_FIELDS.items():
        if info.get(field) is not None and name not in version:
            version[name] = str(info[field])
    return version
