"""Snippet index ↔ seconds."""

from __future__ import annotations

import numpy as np
import torch

from amnet.data.timing import expected_num_snippets, seconds_to_snippet, snippet_to_seconds


def test_centre_of_snippet() -> None:
    # THUMOS14 I3D: 16-frame windows every 4 frames at 30 fps → snippet 0 centred at 8/30 s
    assert snippet_to_seconds(0, 30.0, 4, 16) == 8 / 30
    assert snippet_to_seconds(10, 30.0, 4, 16) == 48 / 30


def test_inverse_on_numpy_and_torch() -> None:
    idx = np.array([0.0, 0.5, 3.25, 1000.0])
    sec = snippet_to_seconds(idx, 29.97, 16, 16)
    assert isinstance(sec, np.ndarray)
    np.testing.assert_allclose(seconds_to_snippet(sec, 29.97, 16, 16), idx, atol=1e-9)
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    back = seconds_to_snippet(snippet_to_seconds(t, 25.0, 4, 16), 25.0, 4, 16)
    assert isinstance(back, torch.Tensor)
    torch.testing.assert_close(back, t)


def test_expected_num_snippets() -> None:
    assert expected_num_snippets(10.0, 10.0, 2, 4) == 49  # (100 - 4) // 2 + 1
    assert expected_num_snippets(0.1, 10.0, 2, 4) == 1  # shorter than one window
