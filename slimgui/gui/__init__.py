"""The Qt desktop app (views over ``slimgui.core``); nothing here computes."""
