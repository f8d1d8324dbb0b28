"""Where files live: an Airflow ``ObjectStoragePath``, so a folder can be S3, GCS or a shared volume.

With workers on several machines nothing may depend on one worker's disk: the dry-run artifacts
(and reports) go under ``$CHT_BRIDGE_ARTIFACTS`` (e.g. ``s3://aws_default@bucket/cht-bridge``,
the Connection before ``@``; default: ``$AIRFLOW_HOME/cht_bridge`` on the local disk, as before),
and a reverse pipeline's CSV drop folder may be such a URL too. A plain path is the local disk.

``airflow.sdk`` is imported inside the functions: DAG files import modules that import this one.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

ARTIFACTS_ENV = "CHT_BRIDGE_ARTIFACTS"
#: Where a CSV reverse pipeline's *relative* ``source.folder`` lives when workers share no disk: a URL
#: every worker reaches (``file:///shared/`` for a volume mounted at the same path on each, ``s3://…``).
CSV_ROOT_ENV = "CHT_BRIDGE_CSV_ROOT"
LOCAL_PROTOCOLS = ("", "file", "local")
#: Why a folder with ``..`` is refused (the reverse loader and ``shared_csv_folder`` say the same).
CLIMBS_OUT = "must not contain '..': a drop folder is read, and its files deleted, only where the file names it"


def storage_path(location: Any) -> Any:
    """``location`` (a path, a URL, or already an ObjectStoragePath) as an ``ObjectStoragePath``."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(location, ObjectStoragePath):
        return location
    return ObjectStoragePath(str(location))


def is_local(path: Any) -> bool:
    """True for a plain ``Path`` and for an ObjectStoragePath on the local file system."""
    return isinstance(path, Path) or getattr(path, "protocol", "") in LOCAL_PROTOCOLS


def local_path(path: Any) -> Path:
    """The ``Path`` of a local ObjectStoragePath (owner-only modes need the OS's calls)."""
    return path if isinstance(path, Path) else Path(path.path)


def artifacts_root(default: Path) -> Any:
    """``$CHT_BRIDGE_ARTIFACTS`` as an ObjectStoragePath; else ``default`` (``hooks.bridge_home()``: local, owner-only)."""
    configured = os.environ.get(ARTIFACTS_ENV, "").strip()
    return storage_path(configured or default)


def artifacts_folder(default: Path, name: str, override: Any = None) -> Any:
    """A folder of files for people (reports, model reports): ``override`` (a path or URL) when set,
    else ``<artifacts_root(default)>/<name>``, so with ``$CHT_BRIDGE_ARTIFACTS`` unset it stays local as before."""
    return storage_path(override) if override else artifacts_root(default) / name


def climbs_out(folder: str) -> bool:
    """True when ``folder`` (a path or a URL) has a ``..`` part: joined to ``$CHT_BRIDGE_CSV_ROOT`` it would
    leave that root, and the housekeeping that deletes read files would delete outside it too."""
    return ".." in PurePosixPath(folder).parts


def shared_csv_folder(folder: str) -> Any | None:
    """A relative CSV drop ``folder`` under ``$CHT_BRIDGE_CSV_ROOT`` (an ObjectStoragePath), or None when
    the setting is unset or the folder is absolute or already a URL (then it stays what the file says).

    The setting is how a deployment says "this base is reached by every worker" once, so the same
    pipeline file (``folder: include/lists/contact_tracing``) reads the repository's folder on one
    machine and the shared storage under a distributed executor.

    :raises SettingError: the setting is not a URL (a plain path would be one worker's disk again).
    :raises ConfigError: the folder has a ``..`` part (the reverse loader refuses it first).
    """
    root = os.environ.get(CSV_ROOT_ENV, "").strip()
    if not root or "://" in folder or Path(folder).is_absolute():
        return None
    if "://" not in root:
        from cht_bridge.errors import SettingError

        raise SettingError(
            CSV_ROOT_ENV, f"'{root}' is not a URL every worker reaches (file:///shared/lists/, s3://conn@bucket/)"
        )
    if climbs_out(folder):
        from cht_bridge.errors import ConfigError

        raise ConfigError("source.folder", [f"source.folder: {CLIMBS_OUT}"])
    return storage_path(root) / folder
