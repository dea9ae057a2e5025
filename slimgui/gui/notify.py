"""The one notification area: every message and error of the app goes through :class:`Notifier`.

Nothing pops up a modal box: messages are listed in the Messages panel, the latest one is shown in
a bar above the workspace and in the status bar.  Tests read ``notifier.notifications``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

LEVELS = ("info", "warning", "error")
LEVEL_COLOURS = {"info": "#2563eb", "warning": "#b45309", "error": "#b91c1c"}
LEVEL_BACKGROUNDS = {"info": "#eff6ff", "warning": "#fffbeb", "error": "#fef2f2"}


@dataclass
class Notification:
    level: str
    text: str
    details: str | None = None
    time: float = field(default_factory=time.time)
    action: tuple[str, Callable[[], None]] | None = None  # (button text, what it does): an offer, e.g. "Open"

    def __str__(self) -> str:
        return f"[{self.level}] {self.text}"


class Notifier(QObject):
    """Collects messages; views subscribe to ``posted``."""

    posted = Signal(object)  # Notification

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.notifications: list[Notification] = []

    def post(self, level: str, text: str, details: str | None = None,
             action: tuple[str, Callable[[], None]] | None = None) -> Notification:
        note = Notification(level if level in LEVELS else "info", " ".join(str(text).split()), details, action=action)
        self.notifications.append(note)
        self.posted.emit(note)
        return note

    def info(self, text: str, action: tuple[str, Callable[[], None]] | None = None) -> Notification:
        """A message; with ``action`` the message bar shows it with a button (a non-modal offer)."""
        return self.post("info", text, action=action)

    def warning(self, text: str) -> Notification:
        return self.post("warning", text)

    def error(self, text: str, details: str | None = None) -> Notification:
        return self.post("error", text, details)

    def errors(self) -> list[Notification]:
        return [n for n in self.notifications if n.level == "error"]


class MessageBar(QFrame):
    """A slim, non-modal bar showing the latest warning or error (or a message that offers an action,
    with its button); closes itself or by its button."""

    def __init__(self, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MessageBar")
        self._label = QLabel()
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        self.action_button = QToolButton()
        self.action_button.clicked.connect(self._act)
        self.action_button.hide()
        self._action: Callable[[], None] | None = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 4, 4)
        lay.addWidget(self._label, 1)
        lay.addWidget(self.action_button)
        lay.addWidget(close)
        self._timer = QTimer(self, singleShot=True, interval=12000)
        self._timer.timeout.connect(self.hide)
        self.hide()
        notifier.posted.connect(self.show_note)

    @property
    def text(self) -> str:
        return self._label.text()

    def _act(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()

    def show_note(self, note: Notification) -> None:
        if note.level == "info" and note.action is None:
            return
        self._action = note.action[1] if note.action else None
        self.action_button.setText(note.action[0] if note.action else "")
        self.action_button.setVisible(note.action is not None)
        colour, bg = LEVEL_COLOURS[note.level], LEVEL_BACKGROUNDS[note.level]
        self.setStyleSheet(f"#MessageBar {{ background: {bg}; border: 1px solid {colour}; border-radius: 4px; }}"
                           f"#MessageBar QLabel {{ color: {colour}; }}")
        self._label.setText(("Error: " if note.level == "error" else "") + note.text)
        self.show()
        self.place()
        self._timer.start()

    # -- floating over a host widget ---------------------------------------------------------------
    def float_over(self, host: QWidget) -> None:
        """Float over the top of ``host`` instead of taking a row of its layout: a message appearing or going never
        moves what is under the pointer (a banner that pushed the window down caused misclicks).  The window calls
        :meth:`place` when it is resized (no event filter: a Python filter is called while widgets are destroyed,
        which may happen on another thread)."""
        self._host = host
        self.setParent(host)
        self.hide()

    def place(self) -> None:
        host = getattr(self, "_host", None)
        if host is None or not self.isVisible():
            return
        margin = 8
        width = max(100, host.width() - 2 * margin)
        lay = self.layout()
        height = lay.heightForWidth(width) if lay.hasHeightForWidth() else self.sizeHint().height()
        height = min(max(height, self.minimumSizeHint().height()), max(40, host.height() // 3))
        self.setGeometry(margin, margin, width, height)
        self.raise_()


class NotificationsPanel(QWidget):
    """Every message since the app started, newest last; details (tracebacks) in the tooltip."""

    def __init__(self, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list)
        for note in notifier.notifications:
            self.add(note)
        notifier.posted.connect(self.add)

    def add(self, note: Notification) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(note.time))
        item = QListWidgetItem(f"{stamp}  {note.level.upper():7}  {note.text}")
        item.setForeground(QColor(LEVEL_COLOURS.get(note.level, "#000")))
        if note.details:
            item.setToolTip(note.details)
        self.list.addItem(item)
        self.list.scrollToBottom()
