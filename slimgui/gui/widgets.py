"""Small widget builders the panels share (a path field with its browse button, a thin progress bar)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QProgressBar, QToolButton


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
