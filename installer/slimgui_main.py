"""The bundle's entry point: the `slimgui` command (with no command, or `gui`, it opens the app)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a worker process started by the frozen program runs its task, not the CLI
    from slimgui.cli import main

    sys.exit(main())
