"""Entry point of the desktop app: ``slimgui gui [MODEL] [--screenshot out.png]`` (and bare ``slimgui``)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from slimgui import __version__
from slimgui.core.io import resources_dir
from slimgui.core.jobs import Job
from slimgui.core.model import LoadedModel
from slimgui.core.session import default_criterion

SCREENSHOT_SIZE = (1440, 900)
SCREENSHOT_TIMEOUT_S = float(os.environ.get("SLIMGUI_SCREENSHOT_TIMEOUT", "900"))


def style_sheet(dark: bool = False) -> str:
    """The window's style sheet: the light one, with the dark overrides on top when ``dark``."""
    out = []
    for name in ("style.qss", "style-dark.qss") if dark else ("style.qss",):
        try:
            out.append((resources_dir() / name).read_text(encoding="utf-8"))
        except OSError:
            pass
    return "\n".join(out)


def wants_dark() -> bool:
    """``SLIMGUI_THEME`` = "dark" or "light" decides; otherwise ("system", the default) the system's colour scheme."""
    choice = os.environ.get("SLIMGUI_THEME", "system").strip().lower()
    if choice in ("dark", "light"):
        return choice == "dark"
    from PySide6.QtCore import Qt

    return system_scheme() == Qt.ColorScheme.Dark


def system_scheme():
    """The system's colour scheme as Qt reads it (Unknown where the platform says nothing, e.g. offscreen)."""
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.styleHints().colorScheme()


def dark_palette():
    from PySide6.QtGui import QColor, QPalette

    p = QPalette()
    role, grp = QPalette.ColorRole, QPalette.ColorGroup
    for r, c in ((role.Window, "#1f2937"), (role.WindowText, "#e5e7eb"), (role.Base, "#111827"),
                 (role.AlternateBase, "#1a2230"), (role.ToolTipBase, "#111827"), (role.ToolTipText, "#f3f4f6"),
                 (role.Text, "#e5e7eb"), (role.Button, "#273244"), (role.ButtonText, "#e5e7eb"),
                 (role.BrightText, "#ffffff"), (role.Highlight, "#2563eb"), (role.HighlightedText, "#ffffff"),
                 (role.Link, "#60a5fa"), (role.PlaceholderText, "#6b7280"), (role.Mid, "#374151"),
                 (role.Dark, "#0b1220"), (role.Light, "#374151")):
        p.setColor(r, QColor(c))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(grp.Disabled, r, QColor("#6b7280"))
    return p


def apply_theme(window) -> bool:
    """Light or dark (see :func:`wants_dark`) for the application and ``window``; returns whether dark.  The plots
    keep their white paper (what a saved PNG shows, and what the colour maps were chosen on)."""
    app = QApplication.instance()
    dark = wants_dark()
    if app is not None:
        app.setPalette(dark_palette() if dark else app.style().standardPalette())
    window.setStyleSheet(style_sheet(dark))
    window.setProperty("darkTheme", dark)
    return dark


def create_app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "slimgui"])
        app.setStyle("Fusion")
    app.setApplicationName("SlimGUI")
    app.setOrganizationName("SlimGUI")
    app.setApplicationVersion(__version__)
    return app


_COLLECTOR = None


def collect_garbage_on_the_gui_thread(interval_s: float = 0.5):
    """Python's cyclic garbage collector runs in whichever thread happens to allocate when its thresholds trip —
    often a worker — and a dead Qt object collected there is destroyed there: its destructor can call back into
    Python (a virtual overridden in Python) and wait for the GIL while holding a Qt lock that the GUI thread,
    holding the GIL, waits for (seen: a benchmark job deadlocked against the GUI deleting a menu).  So while a
    window exists, automatic collection is off and pyqtgraph's ``GarbageCollector`` collects on the GUI thread every
    ``interval_s`` (the generations' own thresholds decide how deep).  Worker code never collects by itself
    (:func:`slimgui.core.bench.run_peak_mib` collects only on the main thread).  Idempotent; re-disables automatic
    collection if something enabled it again (the GUI tests do, between tests)."""
    import gc

    global _COLLECTOR
    if _COLLECTOR is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _COLLECTOR = GarbageCollector(interval=interval_s)
    gc.disable()
    return _COLLECTOR


def create_window(registry=None, settings=None):
    from .main_window import MainWindow

    collect_garbage_on_the_gui_thread()
    window = MainWindow(registry=registry, settings=settings)
    apply_theme(window)
    window.theme_follower = ThemeFollower(window)  # the system switching light/dark is followed while the app runs
    return window


class ThemeFollower(QObject):
    """Re-themes its window when the system's colour scheme changes (disconnected when the window goes)."""

    def __init__(self, window):
        super().__init__(window)
        from PySide6.QtGui import QGuiApplication

        self.window = window
        QGuiApplication.styleHints().colorSchemeChanged.connect(self.follow)

    def follow(self, _scheme=None) -> None:
        apply_theme(self.window)


class ScreenshotDirector(QObject):
    """Open the model, run the default analysis, then render the window into a PNG and quit."""

    def __init__(self, window, out: str, app: QApplication):
        super().__init__(window)
        self.window, self.out, self.app = window, out, app
        self.code = 0
        self.done = False
        self._job: Job | None = None
        QTimer.singleShot(int(SCREENSHOT_TIMEOUT_S * 1000), self._timeout)

    def start(self, model: str | None) -> None:
        if model:
            self.window.open_path(model, then=self._opened)
        else:
            QTimer.singleShot(300, self.capture)

    def _opened(self, model: LoadedModel | None) -> None:
        if model is None:
            self.code = 2
            self.capture()
            return
        panel = self.window.analysis_panel
        criterion = default_criterion(self.window.registry, model, panel.data.text() or None)
        if criterion is None or self.window.doc.scores:
            self.capture()
            return
        self._job = panel.run(criterion)
        if self._job is None:
            self.capture()
            return
        self.window.runner.jobFinished.connect(self._finished)

    def _finished(self, job: Job) -> None:
        if job is self._job:
            self.capture()

    def _timeout(self) -> None:
        if not self.done:
            sys.stderr.write(f"slimgui: screenshot: still busy after {SCREENSHOT_TIMEOUT_S:.0f}s; capturing as is\n")
            self.window.runner.cancel_all()
            self.code = 1
            self.capture()

    def capture(self) -> None:
        if self.done:
            return
        self.done = True
        QTimer.singleShot(250, self._grab)  # let layouts and the view settle

    def _grab(self) -> None:
        self.window.model_panel.view.fit_width()
        self.app.processEvents()
        pixmap = self.window.grab()
        Path(self.out).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        if not pixmap.save(self.out, "PNG"):
            sys.stderr.write(f"slimgui: error: could not write the screenshot {self.out}\n")
            self.code = 2
        else:
            for note in self.window.notifier.errors():
                sys.stderr.write(f"slimgui: error: {note.text}\n")
        self.app.exit(self.code)


def main(args) -> int:
    """Run the app; ``args.model`` (may be ``demo:NAME`` or a ``.slim`` session), ``args.screenshot``."""
    screenshot = getattr(args, "screenshot", None)
    model = getattr(args, "model", None)
    if screenshot and QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # render without showing a window
    app = create_app()
    window = create_window()

    def excepthook(kind, value, tb):  # a bug in a slot: report it, keep running
        window.notifier.error(f"internal error: {kind.__name__}: {value}",
                              details="".join(traceback.format_exception(kind, value, tb)))
        sys.__excepthook__(kind, value, tb)

    old_hook = sys.excepthook
    sys.excepthook = excepthook
    try:
        if screenshot:
            window.resize(*SCREENSHOT_SIZE)
            director = ScreenshotDirector(window, screenshot, app)
            window.show()
            director.start(model)
            app.exec()
            window.runner.shutdown(15000)
            return director.code
        window.show()
        if model:
            window.open_path(model)
        return int(app.exec())
    finally:
        sys.excepthook = old_hook
