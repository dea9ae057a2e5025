"""SlimGUI's voice family (being built)."""

from slimgui.core.plugins import Plugin

plugin = Plugin(name="voice", version="0", description="Voice conversion (SpeechT5) — under construction")
