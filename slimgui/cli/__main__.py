"""``python -m slimgui.cli``: the ``slimgui`` command."""

from slimgui.cli import main

raise SystemExit(main())
