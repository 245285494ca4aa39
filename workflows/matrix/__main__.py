"""``python -m workflows.matrix -p params/default.yaml`` (the DVC ``matrix`` stage)."""

import sys

from workflows.matrix import main

if __name__ == "__main__":
    sys.exit(main())
