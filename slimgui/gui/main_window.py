"""The main window: puts the panels together, opens models and sessions, routes drops and menus.

It holds no state of its own beyond the :class:`Document` (what is open) and does no work: opening
and everything after it run as jobs on the :class:`JobRunner`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from slimgui import __version__
from slimgui.core.errors import SlimError
from slimgui.core.jobs import Job, NeedsChoice, file_kind, open_task
from slimgui.core.model import LoadedModel, open_model
from slimgui.core.ops import graph_of
from slimgui.core.plugins import Registry, discover
from slimgui.core.session import SUFFIX, Session

from .analysis_panel import AnalysisPanel
from .bench_panel import BenchPanel
from .compare_panel import ComparePanel
from .dialogs import AdapterChooser
from .document import Document
from .export_panel import ExportPanel
from .jobs_panel import JobsPanel
from .model_view import ModelPanel
from .notify import MessageBar, NotificationsPanel, Notifier
from .plan_panel import PlanPanel
from .retrain_panel import FitScrollArea, RetrainPanel
from .roofline_panel import RooflinePanel
from .scores_panel import ScoresPanel
from .settings import Settings
from .workers import JobRunner

OpenCallback = Callable[[LoadedModel | None], None]
MODEL_WORK = ("analysis", "apply", "preview", "evaluate")  # jobs tied to the open model


def _open_and_graph(path: str, *, registry: Registry, adapter: str | None, remembered: dict[str, str],
                    ready: threading.Event | None = None, progress=None, cancel=None):
    """Worker side of opening: the model and its graph (so the GUI thread only draws).

    ``ready`` is set when the background import of the model libraries is over: two threads importing
    transformers or diffusers at once can leave one with a half-initialised module, so opening waits."""
    if ready is not None and not ready.is_set():
        if progress is not None:
            progress(0, 0, "loading the model libraries")
        ready.wait(timeout=180)
    result = open_task(path, registry=registry, adapter=adapter, remembered=remembered, progress=progress,
                       cancel=cancel)
    if isinstance(result, LoadedModel):
        graph_of(result, registry)
    return result


class MainWindow(QMainWindow):
    def __init__(self, registry: Registry | None = None, settings: Settings | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.registry = registry or discover()
        self.settings = settings or Settings()
        self.notifier = Notifier(self)
        self.runner = JobRunner(self.notifier, self)
        self.doc = Document(self.registry, self)
        self.session_path: str | None = None
        self.chooser: AdapterChooser | None = None
        self.open_job: Job | None = None
        self.libraries_ready = threading.Event()  # set when the background import of the model libraries ends
        self.setWindowTitle("SlimGUI")
        self.setAcceptDrops(True)
        self._build()
        self._build_menus()
        for rec in self.registry.broken():
            self.notifier.warning(f"plugin '{rec.entry_point}' could not be loaded: {rec.error}")
        geometry = self.settings.geometry("main")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1440, 900)
        state = self.settings.geometry("state")
        if state is not None:
            self.restoreState(state)
        self.doc.modelChanged.connect(self._update_title)
        QTimer.singleShot(0, self._warm_up)

    def _warm_up(self) -> None:
        """Import the adapters' code (torch, …) in the background so the first drop opens fast."""
        def load_adapters() -> None:
            try:
                for _, spec in self.registry.adapter_specs():
                    try:
                        self.registry.adapter(spec.name).warm_up()  # ModelAdapter's: may preload its library
                    except Exception:  # reported when the adapter is really used
                        pass
            finally:
                self.libraries_ready.set()

        threading.Thread(target=load_adapters, name="slimgui-warm-up", daemon=True).start()

    # -- building --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.model_panel = ModelPanel(self.doc, self.notifier)
        self.analysis_panel = AnalysisPanel(self.doc, self.runner, self.notifier)
        self.plan_panel = PlanPanel(self.doc, self.runner, self.notifier)
        self.scores_panel = ScoresPanel(self.doc)
        self.compare_panel = ComparePanel(self.doc, self.runner, self.notifier)
        self.retrain_panel = RetrainPanel(self.doc, self.runner, self.notifier, self.settings)
        self.export_panel = ExportPanel(self.doc, self.runner, self.notifier)
        self.bench_panel = BenchPanel(self.doc, self.runner, self.notifier)
        self.roofline_panel = RooflinePanel(self.doc, self.runner, self.notifier, self.model_panel.view)
        for field in (self.analysis_panel.data, self.compare_panel.eval_file, self.retrain_panel.data,
                      self.retrain_panel.eval_file):  # (the option forms mark their own path fields)
            field.setProperty("pathDrop", True)
        work = QWidget()
        wl = QVBoxLayout(work)
        wl.setContentsMargins(0, 0, 0, 0)
        for title, panel in (("Analysis", self.analysis_panel), ("Plan", self.plan_panel)):
            head = QLabel(title)
            head.setObjectName("SectionTitle")
            wl.addWidget(head)
            wl.addWidget(panel)
        wl.setStretch(3, 1)
        scroll = QScrollArea()  # small screens: the panel scrolls instead of forcing a tall window
        scroll.setWidget(work)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.tabs = QTabWidget()
        self.tabs.addTab(scroll, "Analyse && plan")
        self.tabs.addTab(self.scores_panel, "Scores")
        self.tabs.addTab(self.compare_panel, "Compare")
        self.tabs.addTab(FitScrollArea(self.retrain_panel), "Retrain")  # small screens: the tab scrolls
        self.retrain_tab = self.tabs.count() - 1
        self.tabs.addTab(FitScrollArea(self.export_panel), "Export")
        self.tabs.addTab(FitScrollArea(self.bench_panel), "Benchmark")
        self.tabs.addTab(FitScrollArea(self.roofline_panel), "Roofline")  # small screens: the tab scrolls
        self.scores_panel.unitChosen.connect(self.model_panel.view.focus_unit)
        self.retrain_panel.openRequested.connect(self.open_path)
        self.retrain_panel.compareRequested.connect(lambda: self.tabs.setCurrentWidget(self.compare_panel))
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.model_panel)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([760, 680])
        self.message_bar = MessageBar(self.notifier)
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(6, 6, 6, 0)
        cl.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        self.message_bar.float_over(central)  # over the content, never pushing it down
        self.jobs_panel = JobsPanel(self.runner)
        self.messages_panel = NotificationsPanel(self.notifier)
        self.jobs_dock = self._dock("Jobs", self.jobs_panel, "JobsDock")
        self.messages_dock = self._dock("Messages", self.messages_panel, "MessagesDock")
        self.tabifyDockWidget(self.jobs_dock, self.messages_dock)
        self.jobs_dock.raise_()
        self.status_label = QLabel()
        self.statusBar().addWidget(self.status_label, 1)
        self.notifier.posted.connect(lambda n: self.status_label.setText(n.text))
        self.runner.jobAdded.connect(lambda j: self.jobs_dock.raise_())
        for w in self.findChildren(QWidget):
            if w.acceptDrops():
                w.installEventFilter(self)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.message_bar.place()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not getattr(self, "_docks_sized", False):  # at the first show, when the window has its size
            self._docks_sized = True
            # the panel's height plus the dock's title and the tab bar of the tabified docks
            self.resizeDocks([self.jobs_dock], [self.jobs_panel.sizeHint().height() + 44], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, name: str) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        return dock

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        self._action(f, "Open Model Folder…", self._open_folder_dialog, QKeySequence.StandardKey.Open,
                     "Open a model folder of any installed family")
        self._action(f, "Open File…", self._open_file_dialog, "Ctrl+Shift+O", "Open a model file or a .slim session")
        self.recent_menu = f.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.demo_menu = f.addMenu("Open &Demo Model")  # one entry per demo the installed plugins declare
        for plugin in self.doc.registry.plugins:
            for demo in plugin.demos:
                self._action(self.demo_menu, demo.name, lambda _=False, n=demo.name: self.open_path(f"demo:{n}"), None,
                             demo.description)
        f.addSeparator()
        self._action(f, "Save Session", self.save_session_dialog, QKeySequence.StandardKey.Save)
        self._action(f, "Save Session As…", lambda: self.save_session_dialog(ask=True), QKeySequence.StandardKey.SaveAs)
        self._action(f, "Export Slimmed Model…", self.plan_panel._export_clicked)
        self._action(f, "Export Report…", self.export_report_dialog, None,
                     "Write an HTML report of the session: model, plan, scores, healing, benchmark, exports")
        self._action(f, "Close Model", self.close_model, "Ctrl+W",
                     "Close the open model (its running jobs are cancelled)")
        f.addSeparator()
        self._action(f, "Quit", self.close, QKeySequence.StandardKey.Quit)
        e = bar.addMenu("&Edit")
        self.undo_action = self._action(e, "Undo Plan Edit", self.doc.undo, QKeySequence.StandardKey.Undo,
                                        "Undo the last change of the selection or the keep-set")
        self.redo_action = self._action(e, "Redo Plan Edit", self.doc.redo, QKeySequence.StandardKey.Redo,
                                        "Redo the plan edit undone last")
        self.doc.historyChanged.connect(self._history_changed)
        self._history_changed()
        v = bar.addMenu("&View")
        self._action(v, "Fit Model", self.model_panel.view.fit, "F")
        self._action(v, "Zoom In", lambda: self.model_panel.view.zoom(1.25), QKeySequence.StandardKey.ZoomIn)
        self._action(v, "Zoom Out", lambda: self.model_panel.view.zoom(0.8), QKeySequence.StandardKey.ZoomOut)
        v.addSeparator()
        v.addAction(self.jobs_dock.toggleViewAction())
        v.addAction(self.messages_dock.toggleViewAction())
        a = bar.addMenu("&Analysis")
        self._action(a, "Analyse", lambda: self.analysis_panel.run(), "Ctrl+R")
        self._action(a, "Apply Plan", lambda: self.plan_panel.apply(), "Ctrl+Return")
        self._action(a, "Retrain…", lambda: self.tabs.setCurrentIndex(self.retrain_tab), None,
                     "Heal the slimmed model with one of its family's healing methods")
        self._action(a, "Export…", lambda: self.show_panel(self.export_panel), None,
                     "Export in one of the formats the model's family declares, or its native folder")
        self._action(a, "Benchmark…", lambda: self.show_panel(self.bench_panel), None,
                     "Measure latency and throughput of the original, slimmed and exported models")
        self._action(a, "Roofline…", lambda: self.show_panel(self.roofline_panel), None,
                     "Where time goes on this machine: each unit's FLOPs, bytes, intensity, roofline bound and "
                     "measured time (the CLI's `slimgui profile`)")
        self._action(a, "Cancel All Jobs", self.runner.cancel_all, "Ctrl+.")
        h = bar.addMenu("&Help")
        self._action(h, "SlimGUI Help", self.show_help, QKeySequence.StandardKey.HelpContents,
                     "How to use SlimGUI, its keyboard shortcuts and the README")
        self._action(h, "Installed Plugins", self._show_plugins)
        self._action(h, "About SlimGUI", lambda: self.notifier.info(
            f"SlimGUI {__version__} — structured pruning workbench; everything runs locally."))

    def _history_changed(self) -> None:
        self.undo_action.setEnabled(self.doc.can_undo)
        self.redo_action.setEnabled(self.doc.can_redo)

    def close_model(self) -> None:
        """Close the open model: its running work is cancelled, the views go back to empty."""
        if self.doc.model is None or not self.confirm_unsaved("closing the model"):
            return
        for job in self.runner.active():
            if job.kind in MODEL_WORK:
                self.runner.cancel(job)
        source = self.doc.model.source
        self.session_path = None
        self.doc.close_model()
        self._update_title()
        self.notifier.info(f"Closed {source}")

    def shortcuts(self) -> list[tuple[str, str]]:
        """(menu entry, shortcut) of every menu action that has one, in menu order."""
        out = []
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            for act in (menu.actions() if menu is not None else []):
                if not act.shortcut().isEmpty():
                    out.append((f"{menu_action.text().replace('&', '')} → {act.text()}",
                                act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)))
        return out

    def show_help(self) -> None:
        """The Help window: how the app works, its keyboard shortcuts, and the README."""
        from .dialogs import HelpDialog

        self.help_dialog = HelpDialog(self.shortcuts(), self)
        self.help_dialog.show()

    def show_panel(self, panel: QWidget) -> None:
        """Bring the tab that holds ``panel`` (directly or in its scroll area) to the front."""
        for i in range(self.tabs.count()):
            tab = self.tabs.widget(i)
            inner = tab.widget() if isinstance(tab, QScrollArea) else None
            if tab is panel or inner is panel or (inner is not None and inner.isAncestorOf(panel)):
                self.tabs.setCurrentIndex(i)
                return

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent()
        for path in recent:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(partial(self.open_path, path))
        if not recent:
            self.recent_menu.addAction("(nothing yet)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear", self.settings.clear_recent)

    def _show_plugins(self) -> None:
        for rec in self.registry.describe():
            if rec["status"] == "ok":
                crit = ", ".join(c["name"] for c in rec["criteria"]) or "no criteria"
                self.notifier.info(f"plugin {rec['name']} {rec['version']} ({rec['source']}): {crit}")
            else:
                self.notifier.warning(f"plugin {rec['name']} is broken: {rec['error']}")
        self.messages_dock.raise_()

    def _update_title(self) -> None:
        m = self.doc.model
        name = (Path(m.source).name or m.source) if m else ""
        session = f" [{Path(self.session_path).name}]" if self.session_path else ""
        self.setWindowTitle(f"{name}{session} — SlimGUI" if name else "SlimGUI")

    # -- opening ---------------------------------------------------------------------------------
    def _open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a model folder")
        if path:
            self.open_path(path)

    def _open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model or session", "",
                                              f"SlimGUI sessions (*{SUFFIX});;Models (config.json *.safetensors "
                                              "*.bin *.pt *.pth);;All files (*)")
        if path:
            self.open_path(path)

    # -- unsaved work -------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        return json.dumps(self.doc.session.to_json(), sort_keys=True, default=str)

    def mark_saved(self) -> None:
        """What is on screen now is what was opened or saved: nothing to lose."""
        self._saved_print = self._fingerprint() if self.doc.model is not None else ""

    def has_unsaved_work(self) -> bool:
        """Scores, a plan, a slimmed model or results that changed since the session was opened or saved."""
        if self.doc.model is None:
            return False
        s = self.doc.session
        work = bool(s.scores or self.doc.remove or self.doc.slimmed is not None or s.results)
        return work and self._fingerprint() != getattr(self, "_saved_print", "")

    def ask_unsaved(self, what: str) -> str:
        """"save", "discard" or "cancel" (a dialog; tests replace it)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved work",
                          f"The session of {Path(self.doc.model.source).name} has unsaved work (scores, plan or "
                          f"results). Save it before {what}?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(QMessageBox.StandardButton(answer), "cancel")

    def confirm_unsaved(self, what: str) -> bool:
        """True when the current session may be replaced: nothing unsaved, saved now, or discarded on purpose."""
        if not self.has_unsaved_work():
            return True
        answer = self.ask_unsaved(what)
        if answer == "save":
            self.save_session_dialog(ask=not self.session_path)
            return not self.has_unsaved_work()
        return answer == "discard"

    def open_path(self, path: str, then: OpenCallback | None = None, adapter: str | None = None) -> Job | None:
        """Open a model (folder, file, hub id or ``demo:NAME``) or a ``.slim`` session, in the background; unsaved
        work of the open session is offered for saving first."""
        path = str(path)
        if not self.confirm_unsaved(f"opening {Path(path).name or path}"):
            if then is not None:
                then(None)
            return None
        if path.lower().endswith(SUFFIX):
            return self.open_session(path, then=then)
        return self._open_model(path, then=then, adapter=adapter)

    def _open_model(self, path: str, *, then: OpenCallback | None = None, adapter: str | None = None,
                    after: Callable[[LoadedModel], None] | None = None) -> Job:
        name = path if path.startswith("demo:") else (Path(path).name or path)

        def done(result: Any) -> None:
            if isinstance(result, NeedsChoice):
                self._ask_adapter(result, then=then, after=after)
                return
            self.session_path = None
            for job in self.runner.active():  # work on the previous model is no longer wanted
                if job.kind in MODEL_WORK:
                    self.runner.cancel(job)
            self.doc.set_model(result, result.source)
            self.mark_saved()
            self.settings.add_recent(result.source)
            how = "" if result.has_weights else " (config only: structure without weights)"
            self.notifier.info(f"Opened {result.source}{how}")
            for line in (result.extra or {}).get("notes") or []:  # how it was opened (e.g. streamed block by block)
                self.notifier.info(str(line))
            if after is not None:
                after(result)
            if then is not None:
                then(result)

        def failed(job: Job) -> None:
            if then is not None:
                then(None)

        self.open_job = self.runner.submit(
            f"Open {name}",
            partial(_open_and_graph, path, registry=self.registry, adapter=adapter,
                    remembered=self.settings.adapter_choices(), ready=self.libraries_ready),
            kind="open", lane="io", on_done=done, on_failed=failed,
            on_cancelled=lambda _j: then(None) if then else None)
        return self.open_job

    def _ask_adapter(self, need: NeedsChoice, *, then: OpenCallback | None, after) -> None:
        def chosen(name: str, remember: bool) -> None:
            if remember:
                self.settings.remember_adapter(file_kind(need.path), name)
            self._open_model(need.path, then=then, adapter=name, after=after)

        self.chooser = AdapterChooser(need, chosen, self)
        self.chooser.rejected.connect(lambda: then(None) if then else None)
        self.chooser.open()

    # -- sessions --------------------------------------------------------------------------------
    def open_session(self, path: str, then: OpenCallback | None = None) -> Job | None:
        try:
            session = Session.load(path)
        except SlimError as exc:
            self.notifier.error(f"Could not open the session: {exc.one_line()}")
            if then is not None:
                then(None)
            return None
        if not session.model_path:
            self.notifier.error(f"The session {path} names no model")
            return None

        def after(model: LoadedModel) -> None:
            self.session_path = path
            self._update_title()
            self._restore(session, model)
            self.mark_saved()

        return self._open_model(session.model_path, then=then, adapter=session.adapter, after=after)

    def _restore(self, session: Session, model: LoadedModel) -> None:
        try:
            self.doc.restore(session)
        except SlimError as exc:
            self.notifier.warning(exc.one_line())
        self.analysis_panel.apply_settings()
        self.plan_panel.update_estimate()
        self.compare_panel.apply_settings()
        self.retrain_panel.apply_settings()
        self.export_panel.apply_settings()
        self.bench_panel.apply_settings()
        if session.view.get("overlay") in self.doc.overlays:
            self.doc.show_overlay(session.view["overlay"])
        if isinstance(session.view.get("expanded"), list):  # else the layout's own default stays
            self.model_panel.view.set_expanded(session.view["expanded"])
        if isinstance(session.view.get("tab"), int):
            self.tabs.setCurrentIndex(session.view["tab"])
        results = {k: (dict(v) if isinstance(v, dict) else v) for k, v in session.results.items()}
        if session.slimmed_path and Path(session.slimmed_path).exists():
            def load(progress=None, cancel=None):
                slim = open_model(session.slimmed_path, registry=self.registry, adapter=model.adapter,
                                  progress=progress, cancel=cancel)
                graph_of(slim, self.registry)
                return slim
            title = f"Open slimmed model {Path(session.slimmed_path).name}"
        elif session.slimmed_remove:
            from slimgui.core.jobs import apply_task
            from slimgui.core.plan import PruningPlan

            plan = PruningPlan(remove=list(session.slimmed_remove), locked=list(self.doc.locked),
                               keep=self.doc.keep, model=model.source)

            def load(progress=None, cancel=None):
                return apply_task(model, plan, registry=self.registry, progress=progress, cancel=cancel)[0]
            title = "Rebuild the slimmed model"
        else:
            self.notifier.info(f"Session restored from {self.session_path}")
            return

        def done(slim: LoadedModel, m=model) -> None:
            if self.doc.model is not m:
                return
            self.doc.set_slimmed(slim, session.slimmed_path, session.slimmed_remove)
            self.doc.session.results = results  # what was on screen, slimmed side included
            self.doc.resultsChanged.emit()
            self.mark_saved()
            self.notifier.info(f"Session restored from {self.session_path}")

        self.runner.submit(title, load, kind="open", lane="model", on_done=done)

    def save_session(self, path: str) -> Path:
        """Write the session (versioned JSON) to ``path``; raises SlimError when it cannot."""
        if self.doc.model is None:
            raise SlimError("nothing to save: open a model first")
        if not str(path).lower().endswith(SUFFIX):
            path = f"{path}{SUFFIX}"
        self._store_settings()
        out = self.doc.session.save(path)
        self.mark_saved()
        self.session_path = str(out)
        self.settings.add_recent(str(out))
        self._update_title()
        self.notifier.info(f"Session saved to {out}")
        return out

    def _store_settings(self) -> None:
        """The panels' settings and the view's state into the session (before saving or reporting it)."""
        self.compare_panel.store_settings()
        self.retrain_panel.store_settings()
        self.export_panel.store_settings()
        self.bench_panel.store_settings()
        self.doc.session.view = {"expanded": sorted(self.model_panel.view.expanded), "tab": self.tabs.currentIndex()}
        if self.doc.active_overlay:
            self.doc.session.view["overlay"] = self.doc.active_overlay

    # -- the report ------------------------------------------------------------------------------
    def export_report(self, path: str | Path, offer_open: bool = True) -> Path | None:
        """Write the HTML report of the session on screen to ``path`` (model, plan, scores, healing curves,
        benchmark, export checks); the message offers to open it.  None (and a message) when it cannot."""
        from slimgui.core.report import write_session_report

        if self.doc.model is None:
            self.notifier.warning("Open a model first: the report describes the session on screen.")
            return None
        if not str(path).lower().endswith((".html", ".htm")):
            path = f"{path}.html"
        self._store_settings()
        try:
            out = write_session_report(self.doc.session, path)
        except (SlimError, OSError) as exc:
            text = exc.one_line() if isinstance(exc, SlimError) else f"{exc.strerror or exc}"
            self.notifier.error(f"Could not write the report: {text}")
            return None
        action = ("Open", lambda: QDesktopServices.openUrl(url_for(out))) if offer_open else None
        self.notifier.info(f"Report written to {out}", action=action)
        return out

    def export_report_dialog(self) -> None:
        if self.doc.model is None:
            self.notifier.warning("Open a model first: the report describes the session on screen.")
            return
        name = Path(self.doc.model.source).name or "model"
        base = Path(self.session_path).parent if self.session_path else Path.home()
        path, _ = QFileDialog.getSaveFileName(self, "Export the session report", str(base / f"{name}-report.html"),
                                              "HTML (*.html)")
        if path:
            self.export_report(path)

    def save_session_dialog(self, ask: bool = False) -> None:
        path = self.session_path
        if ask or not path:
            default = str(Path.home() / f"{Path(self.doc.model.source).name if self.doc.model else 'session'}{SUFFIX}")
            path, _ = QFileDialog.getSaveFileName(self, "Save session", path or default,
                                                  f"SlimGUI sessions (*{SUFFIX})")
        if path:
            try:
                self.save_session(path)
            except SlimError as exc:
                self.notifier.error(exc.one_line())

    # -- drag and drop anywhere ------------------------------------------------------------------
    @staticmethod
    def _local_paths(mime) -> list[str]:
        if mime is None or not mime.hasUrls():
            return []
        return [u.toLocalFile() if u.isLocalFile() else u.toString() for u in mime.urls()]

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if self._local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = self._local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        if len(paths) > 1:
            self.notifier.info(f"{len(paths)} items dropped: opening the first, {paths[0]}")
        self.open_path(paths[0])

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        t = event.type()
        if t in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop) and isinstance(obj, QWidget):
            paths = self._local_paths(event.mimeData())
            if paths:
                if t != QEvent.Type.Drop:
                    event.acceptProposedAction()
                elif obj.property("pathDrop") and Path(paths[0]).is_file():
                    obj.setText(paths[0])  # a text file dropped on a file field fills it
                    event.acceptProposedAction()
                else:
                    self.dropEvent(event)
                return True
        return super().eventFilter(obj, event)

    # -- closing ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        if not self.confirm_unsaved("quitting"):
            event.ignore()
            return
        self.settings.set_geometry("main", self.saveGeometry())
        self.settings.set_geometry("state", self.saveState())
        self.settings.sync()
        if not self.runner.shutdown(15000):
            self.notifier.warning("some jobs did not stop in time")
        super().closeEvent(event)


def url_for(path: str | Path) -> QUrl:
    return QUrl.fromLocalFile(str(path))
