#!/bin/sh
# Adds SlimGUI to the desktop's application menu for this user (no root): the desktop entry, pointed at this folder,
# goes to ~/.local/share/applications and the icon to ~/.local/share/icons.  `./install-desktop.sh --remove` undoes it.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor"
if [ "${1:-}" = "--remove" ]; then
    rm -f "$apps/slimgui.desktop" "$icons/256x256/apps/slimgui.png" "$icons/scalable/apps/slimgui.svg"
    echo "removed SlimGUI from the application menu"
    exit 0
fi
mkdir -p "$apps" "$icons/256x256/apps" "$icons/scalable/apps"
cp "$here/slimgui.png" "$icons/256x256/apps/slimgui.png"
cp "$here/slimgui.svg" "$icons/scalable/apps/slimgui.svg"
sed -e "s|^Exec=slimgui |Exec=\"$here/slimgui\" |" -e "s|^TryExec=slimgui|TryExec=$here/slimgui|" \
    "$here/slimgui.desktop" > "$apps/slimgui.desktop"
chmod 644 "$apps/slimgui.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" || true
echo "SlimGUI added to the application menu ($apps/slimgui.desktop)"
