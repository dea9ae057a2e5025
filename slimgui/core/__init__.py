"""The Qt-free core of SlimGUI: models, graphs, criteria, plans, jobs and plugins.

Nothing in this package may import PySide6, pyqtgraph, ``slimgui.gui`` or a plugin by name;
an import-linter contract (see pyproject.toml) enforces it and a test runs the contract.
"""

from .errors import SlimError

__all__ = ["SlimError"]
