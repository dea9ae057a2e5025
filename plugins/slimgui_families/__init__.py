"""SlimGUI's built-in model families, one subpackage each (``llm``: transformers language models; ``diffusion``:
diffusers U-Nets).  Each is a plugin registered through the ``slimgui.plugins`` entry point exactly like a
third party's, and nothing in ``slimgui`` (core, CLI, app) imports this package: an import-linter contract in
pyproject.toml forbids it, so a new built-in family is a new subpackage and one entry point."""
