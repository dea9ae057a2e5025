"""SlimGUI's gan family (being built)."""

from slimgui.core.plugins import Plugin

plugin = Plugin(name="gan", version="0", description="U-Net GAN generators (Pix2Pix): Cut Inner Layers — under construction")
