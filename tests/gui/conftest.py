"""Fixtures shared by the GUI tests: a private config, one torch thread, windows that clean up.

They live in this folder so that the core tests never need Qt.
"""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from guikit import RUNNERS  # noqa: E402

from slimgui.gui.app import create_window  # noqa: E402
from slimgui.gui.settings import Settings  # noqa: E402


@pytest.fixture(autouse=True)
def _private_config(tmp_path, monkeypatch):
    """Settings go to a per-test folder, never the user's config."""
    monkeypatch.setenv("SLIMGUI_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(autouse=True)
def _unsaved_work_is_discarded(monkeypatch):
    """The save prompt before unsaved work is replaced is a modal dialog: tests that open one model after another
    (or close a window with work in it) answer "discard"; tests of the prompt itself set their own answer."""
    from slimgui.gui.main_window import MainWindow

    monkeypatch.setattr(MainWindow, "ask_unsaved", lambda self, what: "discard")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine OpenMP barriers thrash."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_window(qtbot, registry, tmp_path):
    made = []

    def make(reg=None):
        w = create_window(registry=reg or registry, settings=Settings(tmp_path / "config" / "slimgui.ini"))
        RUNNERS.append(w.runner)
        qtbot.addWidget(w)
        w.resize(1280, 800)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.runner.shutdown(30_000)
        RUNNERS.remove(w.runner)


@pytest.fixture(autouse=True)
def _collect_on_the_gui_thread(qtbot):
    """Garbage is collected on the GUI thread only, as in the app (``collect_garbage_on_the_gui_thread``): a worker
    thread that collects may destroy dead Qt objects there, which deadlocks when one of them calls back into Python
    (seen: a worker importing peft, and a benchmark job, vs the GUI deleting a menu).  During the test automatic
    collection is off (pyqtgraph's collector runs on the GUI thread while the test waits in Qt's event loop); after
    it (and qtbot's own clean-up, which closes its widgets) everything is collected here and automatic collection
    is on again for the tests without Qt."""
    import gc

    from slimgui.gui.app import collect_garbage_on_the_gui_thread

    collect_garbage_on_the_gui_thread()
    yield

    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtWidgets import QApplication

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()
    gc.collect()
    gc.enable()


@pytest.fixture
def window(make_window):
    return make_window()
