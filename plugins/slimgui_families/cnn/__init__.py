"""SlimGUI's cnn family: plain torchvision-style CNNs (ResNet / MobileNetV1 state dicts) and hardware-aware slimming
(ABConv).  Manifest only; nothing heavy imported here."""

from slimgui.core.plugins import Plugin

ME = "slimgui_families.cnn"

plugin = Plugin(name="cnn", version="0", description="Plain convolution networks (work in progress)")
