"""Progress bars for every loop longer than a few seconds (tqdm), with one process-wide switch.

Bars show only on a terminal (tqdm's ``disable=None``), never when ``CI`` is set or after
:func:`set_quiet` (the CLI's ``--quiet``).
"""

from __future__ import annotations

import os
from typing import Any

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Switch every later bar of this process off (or back to terminal-only)."""
    global _quiet
    _quiet = quiet


def bars_disabled() -> bool | None:
    """tqdm's ``disable`` value: True when quiet or in CI, else None (= only on a terminal)."""
    return True if _quiet or os.environ.get("CI") else None


def progress(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` honouring the quiet switch."""
    kwargs.setdefault("disable", bars_disabled())
    return tqdm(iterable, **kwargs)
