"""Small widget builders the panels share (a path field with its browse button, a thin progress bar, a titled
value box)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QToolButton, QVBoxLayout


def browse_row(edit: QLineEdit, on_browse: Callable[[], None], tooltip: str | None = None) -> QHBoxLayout:
    """``edit`` with a "…" button after it that calls ``on_browse`` (a file or folder dialog)."""
    button = QToolButton()
    button.setText("…")
    if tooltip:
        button.setToolTip(tooltip)
    button.clicked.connect(on_browse)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row


def thin_progress() -> QProgressBar:
    """A slim progress bar in thousandths (the panels show the text in their status line)."""
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setMaximumHeight(14)
    bar.setTextVisible(False)
    return bar


class StatBox(QFrame):
    """A small titled value box (one figure of a result: a metric, a size)."""

    def __init__(self, title: str, tip: str = ""):
        super().__init__()
        self.setObjectName("MediaSlot")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(title)
        self.title.setObjectName("Hint")
        self.value = QLabel("—")
        self.value.setObjectName("Value")
        self.value.setStyleSheet("font-size: 15px;")
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for w in (self.title, self.value):
            w.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 3, 6, 3)
        lay.setSpacing(0)
        lay.addWidget(self.title)
        lay.addWidget(self.value)
        self.setToolTip(tip)

    def set(self, text: str) -> None:
        self.value.setText(text)
