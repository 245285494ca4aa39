"""``python -m workflows.matrix -p params/default.yaml`` (the DVC ``matrix`` stage)."""

import sys

from workflows.matrix.cli import main

if __name__ == "__main__":
    sys.exit(main())
