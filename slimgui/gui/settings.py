"""Per-user settings: window geometry, recent files, remembered adapter choices.

Stored with ``QSettings`` in an INI file so it is readable and the same on every platform:
``$SLIMGUI_CONFIG_DIR/slimgui.ini`` when that variable is set (tests set it), otherwise the
platform's per-user config folder (``platformdirs.user_config_dir("slimgui")``).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


def config_dir() -> Path:
    override = os.environ.get("SLIMGUI_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("slimgui", appauthor=False))


class Settings:
    """A thin typed layer over one ``QSettings`` INI file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else config_dir() / "slimgui.ini"
        self._qs = QSettings(str(self.path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        self._qs.sync()

    # -- recent files --------------------------------------------------------------------------
    def recent(self) -> list[str]:
        value = self._qs.value("recent/files", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str) -> None:
        items = [p for p in self.recent() if p != path]
        items.insert(0, path)
        self._qs.setValue("recent/files", items[:MAX_RECENT])

    def clear_recent(self) -> None:
        self._qs.remove("recent/files")

    # -- adapter choices per kind of file -------------------------------------------------------
    def adapter_choices(self) -> dict[str, str]:
        self._qs.beginGroup("adapter_choice")
        try:
            return {k: str(self._qs.value(k)) for k in self._qs.childKeys()}
        finally:
            self._qs.endGroup()

    def remember_adapter(self, kind: str, adapter: str) -> None:
        self._qs.setValue(f"adapter_choice/{kind}", adapter)

    # -- geometry ------------------------------------------------------------------------------
    def geometry(self, key: str) -> QByteArray | None:
        value = self._qs.value(f"window/{key}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, key: str, value: QByteArray) -> None:
        self._qs.setValue(f"window/{key}", value)

    # -- misc values ---------------------------------------------------------------------------
    def value(self, key: str, default=None):
        return self._qs.value(key, default)

    def set_value(self, key: str, value) -> None:
        self._qs.setValue(key, value)
