"""Files: atomic writes, versioned JSON, where the app keeps its resources and caches."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import SlimError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` to write (``mkstemp`` in the same folder).  When the block ends it gets the
    user's usual permissions (mkstemp makes 0600 files) and replaces ``path``; on any error it is removed, and an
    OSError becomes one SlimError saying where."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise SlimError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable location") from exc
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise SlimError(f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable location") from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then ``os.replace`` it into place."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


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
    *,
    limit: int | None = None,
) -> dict[str, Any]:
    """Read a versioned JSON document, applying ``migrations[v]`` (v -> v+1) up to the current version.

    The file is read with a size limit (:data:`MAX_JSON_BYTES`) and must be a regular file."""
    path = Path(path)
    doc = read_json_file(path, f"{kind} file", limit=limit, invalid=f"is not a valid JSON {kind} file")
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise SlimError(f"{path} is not a SlimGUI {kind} file", hint=f"expected a JSON object with \"kind\": \"{kind}\"")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
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


# -- reading what the user points at ------------------------------------------------------------
MAX_JSON_BYTES = 256 * 2**20  # sessions, scores, plans, reports: far more than any the app writes
MAX_CONFIG_BYTES = 16 * 2**20  # a model's config.json / model_index.json (real ones are a few KB)


def _human_size(n: int) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n} bytes"


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def regular_file_stat(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path``, refusing what is missing, a folder, a FIFO, a device or a socket, and symlink loops."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise SlimError(f"{what} {p} does not exist") from None
    except OSError as exc:  # ELOOP (a symlink loop), ENAMETOOLONG, EACCES, ...
        raise SlimError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SlimError(f"{what} {p} is a folder", hint="give a file")
    if not stat.S_ISREG(st.st_mode):
        raise SlimError(f"{what} {p} is {_kind_of(st.st_mode)}, not a regular file", hint="give a file on disk")
    return st


def read_bytes_limited(path: str | os.PathLike, what: str = "file", *, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (never more than ``limit + 1`` are read)."""
    p = Path(path)
    st = regular_file_stat(p, what)
    too_big = SlimError(f"{what} {p} is larger than {_human_size(limit)}",
                        hint="give a smaller file")
    if st.st_size > limit:
        raise too_big
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it does not hang
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SlimError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SlimError(f"{what} {p} is not a regular file", hint="give a file on disk")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 16 * 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise SlimError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise too_big
    return data


def read_json_file(path: str | os.PathLike, what: str = "JSON file", *, limit: int | None = None,
                   invalid: str | None = None) -> Any:
    """Parse a UTF-8 JSON file read with a size limit; bad bytes, bad JSON and absurd nesting are one message."""
    p = Path(path)
    raw = read_bytes_limited(p, what, limit=MAX_JSON_BYTES if limit is None else limit)
    bad = invalid or "is not valid JSON"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SlimError(f"{p} {bad}: not UTF-8 text (byte {exc.start} is invalid)") from None
    if not text.strip():
        raise SlimError(f"{p} {bad}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlimError(f"{p} {bad}: {exc}") from None
    except RecursionError:
        raise SlimError(f"{p} {bad}: it is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise SlimError(f"{p} {bad}: {str(exc).splitlines()[0][:120]}") from None


# -- where outputs go ---------------------------------------------------------------------------
def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


# The file SlimGUI writes into every folder it creates as an output; ``--force`` replaces a non-empty folder only
# when it holds this (or a file only SlimGUI writes: a plan, a training job or its record).
OUTPUT_MARKER = ".slimgui-output"
OWN_FILES = (OUTPUT_MARKER, "slimgui_plan.json", "job.json", "slimgui_train.json")
STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<what>partial|old)-(?P<pid>\d+)$")


def usual_permissions(folder: str | os.PathLike) -> None:
    """Give every file under ``folder`` the permissions a new file gets here (0666 less the umask): some writers
    (safetensors) create theirs 0600, unlike their siblings."""
    mode = 0o666 & ~_umask()
    for p in Path(folder).rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                os.chmod(p, mode)
            except OSError:
                pass


def write_output_marker(folder: str | os.PathLike, what: str) -> None:
    """Mark ``folder`` as SlimGUI's output (what it holds, e.g. "model"), so a later ``--force`` may replace it."""
    atomic_write_text(Path(folder) / OUTPUT_MARKER, json.dumps({"written_by": "slimgui", "holds": what}) + "\n")


def is_own_output(folder: Path) -> bool:
    """Whether ``folder`` is one SlimGUI wrote (it holds the output marker, a plan or a training job)."""
    return any((folder / name).is_file() for name in OWN_FILES)


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def staging_name(path: str | os.PathLike) -> re.Match | None:
    """The parts of a staging folder's name (``.NAME.partial-PID`` / ``.NAME.old-PID``), or None."""
    return STAGING.match(Path(path).name)


def clean_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders of earlier saves into ``out`` whose process is gone (a kill before the final
    rename leaves ``.NAME.partial-PID``; one during a ``--force`` replace leaves ``.NAME.old-PID``).  Returns what
    was removed."""
    removed = []
    try:
        siblings = list(out.parent.iterdir()) if out.parent.is_dir() else []
    except OSError:
        return removed
    for sib in siblings:
        m = staging_name(sib)
        if m is None or m.group("name") != out.name or pid_alive(int(m.group("pid"))):
            continue
        try:
            shutil.rmtree(sib) if sib.is_dir() and not sib.is_symlink() else sib.unlink()
            removed.append(sib)
        except OSError:
            pass
    return removed


def replace_folder(tmp: Path, out: Path) -> Path:
    """Move the finished folder ``tmp`` into place as ``out`` (a sibling), replacing what was there."""
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def shipped_or_built(name: str, version: int, required: tuple[str, ...], build: Callable[..., Any],
                     progress: Any = None, cancel: Any = None) -> Path:
    """A demo model's folder: the one shipped in ``resources/demo/NAME`` when it holds every ``required`` file,
    else the one built into the cache (``demo-NAME-vVERSION/model``), built now by ``build(out, progress,
    cancel)`` when missing too."""
    def complete(folder: Path) -> bool:
        return all((folder / f).is_file() for f in required)

    folder = resources_dir() / "demo" / name
    if not complete(folder):
        folder = cache_dir() / f"demo-{name}-v{version}" / "model"
        if not complete(folder):
            build(folder, progress, cancel)
    return folder


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full: an OSError ENOSPC/EDQUOT, or a library's error that
    carries the OS message (safetensors: "No space left on device (os error 28)")."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def check_output_path(path: str | os.PathLike | None, kind: str = "folder", *, force: bool = False,
                      sources: Any = (), what: str = "--out") -> Path:
    """Check, before any work starts, that an output can be written; returns its absolute path.

    ``kind`` is ``"folder"`` (replaced as a whole) or ``"file"``.  Refused, each with one message: an empty
    path, the filesystem root, the current folder or one above it (a folder output), an existing output
    without ``force`` (a non-empty folder, a file), a folder where a file is wanted, a device, FIFO or
    socket, a symlink loop, a name longer than the filesystem allows, a location that cannot be written
    (tested by creating and removing a temporary file there: ``/proc``, ``/sys``, read-only folders) and,
    for every path in ``sources`` (the model folders the command reads), an output that is a source, lies
    inside one or contains one.
    """
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', not {kind!r}")
    raw = "" if path is None else os.fspath(path)
    if not raw.strip():
        raise SlimError(f"{what} is empty", hint=f"give the {kind} to write")
    if "\x00" in raw:
        raise SlimError(f"{what} {raw!r} contains a NUL character")
    try:
        absolute = Path(os.path.abspath(Path(raw).expanduser()))
        real = absolute.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise SlimError(f"{what} {raw} cannot be resolved: {getattr(exc, 'strerror', None) or exc}",
                        hint="a symbolic link in it may point to itself") from None
    if real == Path(real.anchor) or not real.name:
        raise SlimError(f"{what} {raw} is the root of the filesystem", hint=f"give a new {kind} to write")
    too_long = next((part for part in real.parts if len(os.fsencode(part)) > 255), None)
    if too_long is not None:
        raise SlimError(f"{what}: the name {too_long[:40]}… in it is longer than 255 bytes", hint="choose a shorter name")
    for src in sources or ():
        if not src:
            continue
        s = Path(os.path.abspath(Path(os.fspath(src)).expanduser()))
        if not s.exists():
            continue
        try:
            s = s.resolve()
        except (OSError, RuntimeError):
            continue
        if not s.is_dir():
            s = s.parent
        if real == s:
            msg = "is the model folder itself"
        elif _is_within(real, s):
            msg = f"lies inside the model folder {s}"
        elif _is_within(s, real):
            msg = f"contains the model folder {s}"
        else:
            continue
        raise SlimError(f"{what} {raw} {msg}", hint="write the output outside the model it is made from")
    if kind == "folder":
        try:
            cwd = Path.cwd().resolve()
        except OSError:
            cwd = None
        if cwd is not None and _is_within(cwd, real):
            where = "the current folder" if real == cwd else "a folder that contains the current folder"
            raise SlimError(f"{what} {raw} is {where}", hint="the output folder is replaced as a whole: give a new folder")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        blocker = next((a for a in reversed(real.parents) if a.exists() and not a.is_dir()), real.parent)
        raise SlimError(f"cannot write {what} {raw}: {blocker} is a file, not a folder",
                        hint="choose another location") from None
    except OSError as exc:
        raise SlimError(f"{what} {raw}: {exc.strerror or exc}") from None
    if st is not None:
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise SlimError(f"{what} {raw} is {_kind_of(st.st_mode)}", hint=f"give a {kind} on disk")
        if kind == "file" and stat.S_ISDIR(st.st_mode):
            raise SlimError(f"{what} {raw} is a folder", hint="give a file name")
        if not force:
            if stat.S_ISREG(st.st_mode):
                raise SlimError(f"{real} already exists", hint=f"choose another {what} or pass --force")
            try:
                empty = not any(real.iterdir())
            except OSError as exc:
                raise SlimError(f"cannot read {real}: {exc.strerror or exc}") from None
            if not empty:
                raise SlimError(f"{real} already exists and is not empty", hint=f"choose another {what} or pass --force")
        elif stat.S_ISDIR(st.st_mode):
            try:
                empty = not any(real.iterdir())
            except OSError as exc:
                raise SlimError(f"cannot read {real}: {exc.strerror or exc}") from None
            if not empty and not is_own_output(real):
                raise SlimError(f"{real} holds files SlimGUI did not write; --force replaces only SlimGUI's own "
                                "outputs", hint=f"choose another {what}, or empty that folder first")
    anc = real.parent
    while not anc.exists():
        if anc.is_symlink():
            raise SlimError(f"{what} {raw}: {anc} is a broken symbolic link")
        anc = anc.parent
    if not anc.is_dir():
        raise SlimError(f"cannot write {what} {raw}: {anc} is a file, not a folder", hint="choose another location")
    try:
        fd, probe = tempfile.mkstemp(prefix=".slimgui-write-test-", dir=anc)
    except OSError as exc:
        raise SlimError(f"cannot write {what} {raw}: {anc} is not writable ({exc.strerror or exc})",
                        hint="choose a writable location") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return real


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
