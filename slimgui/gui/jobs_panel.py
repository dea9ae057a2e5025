"""The Jobs panel: running and finished jobs with progress, ETA and a Cancel button."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.jobs import Job, JobStatus, format_eta

from .workers import JobRunner

STATUS_COLOURS = {
    JobStatus.QUEUED: "#6b7280", JobStatus.RUNNING: "#2563eb", JobStatus.DONE: "#15803d",
    JobStatus.FAILED: "#b91c1c", JobStatus.CANCELLED: "#b45309",
}
COLUMNS = ("Job", "Status", "Progress", "ETA", "Elapsed", "")


class JobsPanel(QWidget):
    def __init__(self, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.runner = runner
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setWordWrap(False)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, width in ((1, 80), (2, 220), (3, 70), (4, 70), (5, 80)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)
            header.resizeSection(col, width)
        header.setStretchLastSection(False)
        clear = QPushButton("Clear finished")
        clear.setToolTip("Remove finished jobs from the list")
        clear.clicked.connect(self.clear_finished)
        self.summary = QLabel()
        self.summary.setObjectName("Hint")
        top = QHBoxLayout()
        top.setContentsMargins(4, 2, 4, 0)
        top.addWidget(self.summary, 1)
        top.addWidget(clear)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.tree)
        self._items: dict[int, tuple[QTreeWidgetItem, QProgressBar, QPushButton | None]] = {}
        runner.jobAdded.connect(self.add)
        runner.jobChanged.connect(self.update_job)
        self._clock = QTimer(self, interval=1000)
        self._clock.timeout.connect(self._tick)
        self._clock.start()

    def sizeHint(self):  # noqa: N802 — Qt's name: the dock opens showing the bar, the header and four rows
        hint = super().sizeHint()
        rows = max(26, self.tree.fontMetrics().height() + 14)  # a row holds a Cancel button
        hint.setHeight(self.summary.sizeHint().height() + self.tree.header().sizeHint().height() + 4 * rows + 16)
        return hint

    def add(self, job: Job) -> None:
        item = QTreeWidgetItem([job.title, job.status.value, "", "", "", ""])
        item.setToolTip(0, job.title)
        # appended, newest last: inserting above rows that hold item widgets (progress bars, buttons) left the
        # widgets drawn in the wrong row
        self.tree.addTopLevelItem(item)
        self.tree.scrollToItem(item)
        bar = QProgressBar()
        bar.setTextVisible(True)
        bar.setMaximumHeight(16)
        button = QPushButton("Cancel")
        button.setToolTip(f"Cancel “{job.title}”")
        button.clicked.connect(lambda _=False, j=job: self.runner.cancel(j))
        self.tree.setItemWidget(item, 2, bar)
        self.tree.setItemWidget(item, 5, button)
        self._items[job.id] = (item, bar, button)
        self.update_job(job)

    def item_for(self, job: Job) -> QTreeWidgetItem | None:
        entry = self._items.get(job.id)
        return entry[0] if entry else None

    def cancel_button(self, job: Job) -> QPushButton | None:
        """The job's Cancel button while it can still be cancelled, else None."""
        entry = self._items.get(job.id)
        return entry[2] if entry else None

    def update_job(self, job: Job) -> None:
        entry = self._items.get(job.id)
        if entry is None:
            return
        item, bar, button = entry
        status = job.status.value
        if job.cancel_requested and not job.status.finished:
            status = "cancelling"
        item.setText(1, status)
        item.setForeground(1, QColor(STATUS_COLOURS[job.status]))
        frac = job.fraction
        if frac is None and job.status == JobStatus.RUNNING:
            bar.setRange(0, 0)  # busy indicator
        else:
            bar.setRange(0, 1000)
            bar.setValue(int(1000 * (frac or 0.0)))
        message = job.error if job.status == JobStatus.FAILED else job.message
        bar.setFormat("%p%")  # the message goes beside the title: a bar's text is clipped, never wrapped
        item.setText(0, f"{job.title} — {message}" if message else job.title)  # one line, elided by the column
        item.setToolTip(0, f"{job.title}\n{message}" if message else job.title)
        item.setToolTip(1, job.error or job.message or status)
        item.setToolTip(2, message or "")
        item.setText(3, format_eta(job.eta))
        item.setText(4, format_eta(job.elapsed) if job.started else "")
        self._summarise()
        if button is not None:
            button.setEnabled(not job.status.finished and not job.cancel_requested)
            if job.status.finished:  # nothing left to cancel: the row keeps only its outcome
                self.tree.removeItemWidget(item, 5)
                self._items[job.id] = (item, bar, None)

    def clear_finished(self) -> None:
        for job in list(self.runner.jobs):
            entry = self._items.get(job.id)
            if entry is not None and job.status.finished:
                self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(entry[0]))
                del self._items[job.id]
        self._summarise()

    def _summarise(self) -> None:
        active = self.runner.active()
        self.summary.setText(f"{len(active)} running or queued" if active else "No job running")

    def _tick(self) -> None:
        now = time.time()
        for job in self.runner.active():
            if job.started and now - job.started > 0.5:
                self.update_job(job)
