"""Label assignment on hand-built segments: level ranges, centre radius, shortest-GT ties."""

from __future__ import annotations

import torch

from amnet.model.assign import assign_targets, inside_segments, point_layout

RANGES = [[0, 4], [4, 8], [8, 10000]]


def _assign(t, segments, labels, *, ranges=RANGES, radius=1.5, smoothing=0.0, valid=None,
            classes=3):
    points, strides, ids, _ = point_layout(t, len(ranges))
    if valid is None:
        valid = torch.ones(len(segments), len(points), dtype=torch.bool)
    tg = assign_targets(points, strides, ids, valid, [torch.tensor(s, dtype=torch.float32)
                                                      for s in segments],
                        [torch.tensor(lb) for lb in labels], num_classes=classes,
                        regression_ranges=ranges, center_radius=radius,
                        label_smoothing=smoothing)
    return points, ids, tg


def _positives(points, ids, tg, b=0):
    return [(int(ids[i]), float(points[i])) for i in torch.nonzero(tg.pos[b]).flatten()]


def test_point_layout() -> None:
    points, strides, ids, lengths = point_layout(10, 3)
    assert lengths == [10, 5, 3]
    assert points.tolist() == [*range(10), 0, 2, 4, 6, 8, 0, 4, 8]
    assert strides.tolist() == [1.0] * 10 + [2.0] * 5 + [4.0] * 3
    assert ids.tolist() == [0] * 10 + [1] * 5 + [2] * 3


def test_short_action_goes_to_level_zero_with_centre_region() -> None:
    # [2, 6], centre 4. Level 0 centre region [2.5, 5.5] → points 3, 4, 5 with max distance
    # 3, 2, 3 ∈ [0, 4]. Level 1: region [2, 6] → point 4 only (2 and 6 are on the border),
    # max distance 2 ∉ [4, 8]. Level 2: point 4, 2 ∉ [8, ∞).
    points, ids, tg = _assign(12, [[[2.0, 6.0]]], [[1]])
    assert _positives(points, ids, tg) == [(0, 3.0), (0, 4.0), (0, 5.0)]
    pos = tg.pos[0]
    assert tg.dist[0][pos].tolist() == [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]
    assert tg.cls[0][pos].tolist() == [[0.0, 1.0, 0.0]] * 3
    assert (tg.dist[0][~pos] == 0).all() and (tg.cls[0][~pos] == 0).all()


def test_long_action_goes_to_the_coarse_level() -> None:
    # [0, 20], centre 10. Level 0 region [8.5, 11.5] → 9, 10, 11 (max dist ≥ 10 ∉ [0, 4]);
    # level 1 region [7, 13] → 8, 10, 12 (≥ 10 ∉ [4, 8]); level 2 region [4, 16] → 8, 12
    # (max distance 12 ∈ [8, ∞)).
    points, ids, tg = _assign(24, [[[0.0, 20.0]]], [[2]])
    assert _positives(points, ids, tg) == [(2, 8.0), (2, 12.0)]
    assert tg.dist[0][tg.pos[0]].tolist() == [[8.0, 12.0], [12.0, 8.0]]


def test_centre_radius() -> None:
    wide = [[0, 10000]] * 3
    points, ids, tg = _assign(12, [[[0.0, 10.0]]], [[0]], ranges=wide, radius=0.5)
    assert [p for lvl, p in _positives(points, ids, tg) if lvl == 0] == [5.0]  # (4.5, 5.5)
    points, ids, tg = _assign(12, [[[0.0, 10.0]]], [[0]], ranges=wide, radius=2.5)
    assert [p for lvl, p in _positives(points, ids, tg) if lvl == 0] == [3.0, 4.0, 5.0, 6.0, 7.0]
    # radius 0: no centre sampling, every point strictly inside the action
    points, ids, tg = _assign(12, [[[0.0, 10.0]]], [[0]], ranges=wide, radius=0.0)
    level0 = [p for lvl, p in _positives(points, ids, tg) if lvl == 0]
    assert level0 == [float(i) for i in range(1, 10)]


def test_ties_go_to_the_shortest_action_and_equal_lengths_share() -> None:
    wide = [[0, 10000]] * 3
    segs = [[[2.0, 10.0], [4.0, 8.0]]]             # A (class 0, length 8) contains B (class 1, 4)
    points, _, tg = _assign(16, segs, [[0, 1]], ranges=wide, radius=100.0)
    at = {float(p): i for i, p in enumerate(points[:16])}   # level-0 index of each point
    assert tg.cls[0, at[6.0]].tolist() == [0.0, 1.0, 0.0]     # both qualify → the shorter B
    assert tg.dist[0, at[6.0]].tolist() == [2.0, 2.0]
    assert tg.cls[0, at[3.0]].tolist() == [1.0, 0.0, 0.0]     # only A contains 3
    assert tg.dist[0, at[3.0]].tolist() == [1.0, 7.0]
    # C has B's exact extent but class 2: the point learns both classes
    segs = [[[2.0, 10.0], [4.0, 8.0], [4.0, 8.0]]]
    _, _, tg = _assign(16, segs, [[0, 1, 2]], ranges=wide, radius=100.0)
    assert tg.cls[0, at[6.0]].tolist() == [0.0, 1.0, 1.0]


def test_padding_label_smoothing_and_empty_video() -> None:
    points, _, _ = _assign(12, [[[2.0, 6.0]]], [[1]])
    valid = torch.ones(2, len(points), dtype=torch.bool)
    valid[0, 4] = False                                       # level-0 point 4 is padding
    points, ids, tg = _assign(12, [[[2.0, 6.0]], []], [[1], []], valid=valid, smoothing=0.3)
    assert _positives(points, ids, tg) == [(0, 3.0), (0, 5.0)]
    assert not tg.pos[1].any()
    on, off = 0.7 + 0.3 / 4, 0.3 / 4
    torch.testing.assert_close(tg.cls[0, 3], torch.tensor([off, on, off]))
    torch.testing.assert_close(tg.cls[1], torch.full_like(tg.cls[1], off))


def test_inside_segments_inclusive_and_masked() -> None:
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 6:] = False
    got = inside_segments([torch.tensor([[1.0, 2.5], [5.0, 5.0]]), torch.tensor([[4.2, 9.0]])],
                          mask)
    assert got[0].nonzero().flatten().tolist() == [1, 2, 5]
    assert got[1].nonzero().flatten().tolist() == [5]
