"""Dialogs. They are window-modal but opened with ``open()`` (never ``exec()``), so nothing blocks:
the answer arrives through a callback and tests can answer them programmatically."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimgui.core.jobs import NeedsChoice, file_kind


class AdapterChooser(QDialog):
    """Several adapters can open a file equally well: ask which one (and maybe remember it)."""

    def __init__(self, need: NeedsChoice, on_choice: Callable[[str, bool], None], parent: QWidget | None = None):
        super().__init__(parent)
        self.need = need
        self._on_choice = on_choice
        self.setWindowTitle("Open with…")
        kind = file_kind(need.path)
        intro = QLabel(f"Several plugins can open <b>{need.path}</b> equally well. Which one should open it?")
        intro.setWordWrap(True)
        self.list = QListWidget()
        for conf, plugin, spec in need.candidates:
            item = QListWidgetItem(f"{spec.name}  —  {spec.family} family, plugin '{plugin.name}'  "
                                   f"(confidence {conf:.2f})\n{spec.description}")
            item.setData(256, spec.name)
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        self.list.itemDoubleClicked.connect(lambda _i: self.accept())
        label = "this folder kind" if kind == "folder" else f"{kind} files"
        self.remember = QCheckBox(f"Always use this choice for {label}")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.list)
        lay.addWidget(self.remember)
        lay.addWidget(buttons)
        self.resize(560, 300)
        self.accepted.connect(self._accepted)

    @property
    def names(self) -> list[str]:
        return [self.list.item(i).data(256) for i in range(self.list.count())]

    def choose(self, name: str, remember: bool = False) -> None:
        """Pick ``name`` and accept (what a user does; used by tests)."""
        self.list.setCurrentRow(self.names.index(name))
        self.remember.setChecked(remember)
        self.accept()

    def _accepted(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self._on_choice(item.data(256), self.remember.isChecked())


class HelpDialog(QDialog):
    """Help: how the app is used, its keyboard shortcuts (read from the menus) and the README, rendered."""

    def __init__(self, shortcuts: list[tuple[str, str]], parent=None):
        from PySide6.QtWidgets import QTextBrowser

        from slimgui.core.io import resources_dir

        super().__init__(parent)
        self.setWindowTitle("SlimGUI Help")
        self.resize(900, 700)
        rows = "\n".join(f"| {what} | `{keys}` |" for what, keys in shortcuts)
        intro = (
            "# Using SlimGUI\n\n"
            "1. **Open** a model: drop a folder or file on the window, or File → Open (demos: File → Open Demo Model).\n"
            "2. **Analyse**: score every unit with a criterion; the model view is coloured by importance.\n"
            "3. **Plan**: click units to remove them, or set a budget (units, % of parameters, % of MACs) and "
            "Select; the keep-set locks units. Edit → Undo walks back plan edits.\n"
            "4. **Apply** builds the smaller model; **Retrain** heals it; **Compare** shows outputs side by side; "
            "**Export** writes a faster model; **Benchmark** measures it.\n\n"
            "Every action has a command-line twin: `slimgui --help`.\n\n"
            "## Keyboard shortcuts\n\n| action | keys |\n|---|---|\n" + rows + "\n\n")
        readme = resources_dir().parent / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setSearchPaths([str(readme.parent)])
        self.browser.setMarkdown(intro + ("---\n\n" + text if text else "The README is not installed with this copy."))
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        lay.addWidget(close)
