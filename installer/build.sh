#!/usr/bin/env bash
# Builds the Linux desktop bundle: dist/SlimGUI/ (PyInstaller, one folder) and dist/SlimGUI-VERSION-linux-x86_64.tar.gz.
# Usage: installer/build.sh [PYTHON]   (run by `make installer`, which installs PyInstaller into the build environment
# first; PYTHON is the environment's interpreter, the project's .venv by default).  Prints the bundle's size by part.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$ROOT/.venv/bin/python}"
cd "$ROOT"
VERSION="$("$PY" -c 'import sys; sys.path.insert(0, "installer"); import bundle; print(bundle.version())')"
NAME=SlimGUI
ARCHIVE="dist/$NAME-$VERSION-linux-$(uname -m).tar.gz"

"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller installer/slimgui-linux.spec

# What PyInstaller does not place: the app launcher, the desktop entry and icon, the archive's README.
B="dist/$NAME"
install -m 755 installer/SlimGUI "$B/SlimGUI"
install -m 755 installer/install-desktop.sh "$B/install-desktop.sh"
install -m 644 installer/slimgui.desktop "$B/slimgui.desktop"
install -m 644 installer/slimgui.png "$B/slimgui.png"
install -m 644 installer/slimgui.svg "$B/slimgui.svg"
sed "s/@VERSION@/$VERSION/g" installer/README-bundle.md > "$B/README.md"
echo "$VERSION" > "$B/VERSION"

rm -f "$ARCHIVE"
tar -C dist -cf - "$NAME" | gzip -6 > "$ARCHIVE.partial"
mv "$ARCHIVE.partial" "$ARCHIVE"

echo "bundle: $B  $(du -sh "$B" | cut -f1)   archive: $ARCHIVE  $(du -sh "$ARCHIVE" | cut -f1)"
echo "largest parts of the bundle:"
(cd "$B/_internal" && du -s -- * | sort -rn | head -15 | awk '{printf "  %7.1f MB  %s\n", $1/1024, $2}')
