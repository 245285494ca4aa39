"""Fixtures for the data tests (helpers live in ``datahelpers``, a unique module name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from datahelpers import video, write_set

from amnet.config import DataConfig


@pytest.fixture
def data_cfg() -> DataConfig:
    """Geometry matching :func:`write_set`: stride 2, window 4, 8 channels."""
    return DataConfig(feature_dim=8, num_classes=4, stride=2, window=4, default_fps=10.0,
                      max_seq_len=32)


@pytest.fixture
def tiny_set(tmp_path: Path) -> Path:
    db = {"a": video(), "b": video(duration=30.0,
                                   anns=[("Jump", 1.0, 3.0), ("Jump", 20.0, 29.0)]),
          "c": video("Test"), "d": video("Test", anns=[])}
    return write_set(tmp_path / "set", db)
