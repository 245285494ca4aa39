"""``python -m workflows.sweep -p params/sweep.yaml`` (the DVC ``sweep`` stage)."""

import sys

from workflows.sweep import main

if __name__ == "__main__":
    sys.exit(main())
