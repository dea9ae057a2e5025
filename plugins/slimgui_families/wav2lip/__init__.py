"""SlimGUI's wav2lip family: Wav2Lip talking-face generators compressed the unified way (residual-block removal,
channel widths, distillation without adversarial loss, selective INT8).  Manifest only; nothing heavy imported here."""

from slimgui.core.plugins import Plugin

ME = "slimgui_families.wav2lip"

plugin = Plugin(name="wav2lip", version="0", description="Wav2Lip talking-face generators (work in progress)")
