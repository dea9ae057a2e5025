"""Files: atomic writes, versioned JSON, where the app keeps its resources and caches."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import SlimError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then ``os.replace`` it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SlimError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable location") from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the user's usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SlimError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable location") from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_versioned_json(path: str | os.PathLike, kind: str, schema_version: int, payload: dict[str, Any]) -> Path:
    doc = {"kind": kind, "schema_version": schema_version, **payload}
    return atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def read_versioned_json(
    path: str | os.PathLike,
    kind: str,
    schema_version: int,
    migrations: dict[int, Callable[[dict], dict]] | None = None,
) -> dict[str, Any]:
    """Read a versioned JSON document, applying ``migrations[v]`` (v -> v+1) up to the current version."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SlimError(f"{path} does not exist") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SlimError(f"{path} is not a valid JSON {kind} file: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise SlimError(f"{path} is not a SlimGUI {kind} file", hint=f"expected a JSON object with \"kind\": \"{kind}\"")
    version = doc.get("schema_version")
    if not isinstance(version, int):
        raise SlimError(f"{path} has no schema_version")
    if version > schema_version:
        raise SlimError(f"{path} was written by a newer SlimGUI (schema {version} > {schema_version})",
                        hint="upgrade SlimGUI to read it")
    while version < schema_version:
        step = (migrations or {}).get(version)
        if step is None:
            raise SlimError(f"{path} uses schema {version}, which this SlimGUI cannot migrate")
        doc = step(doc)
        version += 1
        doc["schema_version"] = version
    return doc


def onnx_data_file(path: str | os.PathLike) -> Path:
    """The sidecar holding an ONNX file's weights when they are stored outside the graph (``NAME.onnx.data``)."""
    return Path(f"{os.fspath(path)}.data")


def onnx_total_bytes(path: str | os.PathLike) -> int:
    """Size of an exported ONNX model on disk: the graph plus its weight sidecar, if any."""
    data = onnx_data_file(path)
    return Path(path).stat().st_size + (data.stat().st_size if data.is_file() else 0)


def resources_dir() -> Path:
    """The repository's ``resources/`` folder (demo models, icons, screenshots)."""
    override = os.environ.get("SLIMGUI_RESOURCES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "resources"


def cache_dir() -> Path:
    """Per-user cache (built demo data); ``SLIMGUI_CACHE_DIR`` overrides it."""
    override = os.environ.get("SLIMGUI_CACHE_DIR")
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("slimgui", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
