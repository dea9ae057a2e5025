"""SlimGUI: a desktop workbench for structured pruning of neural networks."""

__version__ = "0.1.0"
