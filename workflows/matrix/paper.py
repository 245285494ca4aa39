"""The paper's numbers (Kang et al., WACV 2023, THUMOS14, mAP in %), copied by hand.

Each experiment (:data:`EXPERIMENTS`) names its reference row and, per row of ours, the
paper's mAP at the tIoUs it prints and its average (``None``: not in the text), the place it
comes from, and the claim: the sign of (row − reference) the paper reports. Table 2 compares
as §4.5 does: +MS and the full model against the baseline, +AME+MS and +GAM+MS against +MS.
Fig. 6 prints no numbers; its claim comes from §4.5 ("L2 loss is the most stable and
robust"), so L1 and BCE are claimed below L2. The GAM-depth curve and our own variants have
no paper numbers and no claim.

Table 3's reference (its 1st row) equals Table 2's 2nd row (+MS); its "+ action-aware
attention" and "+ group-based attention" rows are our ``ame_ms`` and ``gam_ms`` rows, whose
paper numbers in Table 3 (59.1, 61.5) differ from Table 2's (60.2, 61.8) for the same modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EXPERIMENTS", "Experiment", "PaperRow"]


@dataclass(frozen=True)
class PaperRow:
    row: str                                  # our row name (params/ablations.yaml)
    source: str                               # where in the paper
    mAP: dict[float, float] = field(default_factory=dict)   # tIoU -> mAP (%)
    average: float | None = None              # average mAP (%)
    claim: int | None = None                  # sign of (row − reference) in the paper
    vs: str | None = None                     # this row's reference, if not the table's


@dataclass(frozen=True)
class Experiment:
    key: str                                  # the row files' `tables:` id
    title: str
    reference: str | None                     # our row the others are compared with
    rows: tuple[PaperRow, ...]

    def paper(self, row: str) -> PaperRow | None:
        return next((r for r in self.rows if r.row == row), None)

    def reference_of(self, row: str) -> str | None:
        """The row ``row`` is compared with (None for the reference row itself)."""
        p = self.paper(row)
        ref = p.vs if p is not None and p.vs else self.reference
        return None if ref == row else ref

    def claim(self, row: str) -> int | None:
        """The paper's sign of (row − reference): explicit, else from its averages."""
        ref_row = self.reference_of(row)
        p, ref = self.paper(row), self.paper(ref_row or "")
        if p is None or ref is None:
            return None
        if p.claim is not None:
            return p.claim
        if p.average is None or ref.average is None or p.average == ref.average:
            return None
        return 1 if p.average > ref.average else -1


_T = (0.3, 0.4, 0.5, 0.6, 0.7)


def _r(row: str, source: str, values: tuple[float, ...], tious: tuple[float, ...] = _T,
       vs: str | None = None) -> PaperRow:
    *maps, avg = values
    return PaperRow(row, source, dict(zip(tious, maps, strict=True)), avg, vs=vs)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("table2", "Table 2: modules (AME, GAM, matching-score head MS)", "baseline", (
        _r("baseline", "Table 2, row 1", (72.2, 66.5, 58.5, 45.6, 29.2, 54.4)),
        _r("ms", "Table 2, row 2", (73.9, 68.1, 61.3, 48.2, 32.1, 56.7)),
        _r("ame_ms", "Table 2, row 3", (75.5, 71.2, 64.5, 52.8, 36.8, 60.2), vs="ms"),
        _r("gam_ms", "Table 2, row 4", (76.4, 72.2, 65.9, 54.7, 39.6, 61.8), vs="ms"),
        _r("full", "Table 2, row 5", (76.7, 73.1, 66.8, 57.2, 42.7, 63.3)),
    )),
    Experiment("table3", "Table 3: attention (reference: +MS = Table 2, row 2)", "ms", (
        _r("ms", "Table 3, row 1", (61.3, 32.1, 56.7), (0.5, 0.7)),
        _r("ame_ms", "Table 3, row 2", (62.9, 36.1, 59.1), (0.5, 0.7)),
        _r("self_attention", "Table 3, row 3", (63.8, 38.0, 60.4), (0.5, 0.7)),
        _r("gam_ms", "Table 3, row 4", (65.3, 39.1, 61.5), (0.5, 0.7)),
    )),
    Experiment("table4", "Table 4: confidence score", "conf_sigmoid", (
        _r("conf_sigmoid", "Table 4, row 1", (75.9, 63.8, 35.6, 59.8), (0.3, 0.5, 0.7)),
        _r("conf_sigmoid_sigmoid", "Table 4, row 2", (76.5, 65.4, 40.7, 62.1), (0.3, 0.5, 0.7)),
        _r("full", "Table 4, row 3", (76.7, 66.8, 42.7, 63.3), (0.3, 0.5, 0.7)),
    )),
    Experiment("table5", "Table 5: loss weights λ1, λ2 (reference: λ1 = λ2 = 1)", "lam_1_1", (
        _r("lam_0.5_0.5", "Table 5, row 1", (76.7, 72.7, 66.3, 55.4, 41.0, 62.4)),
        _r("lam_1_0.5", "Table 5, row 2", (76.0, 72.6, 64.4, 55.1, 41.7, 62.0)),
        _r("lam_0.5_1", "Table 5, row 3", (76.7, 72.5, 65.8, 55.6, 41.4, 62.4)),
        _r("lam_1_1", "Table 5, row 4", (76.7, 73.1, 66.8, 57.2, 42.7, 63.3)),
        _r("lam_2_1", "Table 5, row 5", (76.0, 72.1, 65.1, 54.5, 41.1, 61.8)),
        _r("lam_1_2", "Table 5, row 6", (75.8, 71.9, 65.0, 55.6, 41.6, 62.0)),
        _r("lam_2_2", "Table 5, row 7", (76.5, 72.6, 64.9, 55.1, 40.0, 61.8)),
    )),
    Experiment("fig6", "Fig. 6: matching loss (reference: L2)", "match_l2", (
        PaperRow("match_l1", "Fig. 6 (no numbers); §4.5: L2 is best", claim=-1),
        PaperRow("match_l2", "Fig. 6 (no numbers)"),
        PaperRow("match_bce", "Fig. 6 (no numbers); §4.5: L2 is best", claim=-1),
    )),
    Experiment("depth", "GAM depth (reference: depth 1; not in the paper)", "gam_depth_1", ()),
    Experiment("variants", "Our variants of the full model (reference: full; not in the paper)",
               "full", (
        # voting on the ActionFormer-like models is compared with those same models
        PaperRow("actionformer_like_voting", "ours (not in the paper)",
                 vs="actionformer_like"),
        PaperRow("actionformer_like_conv", "ours (not in the paper)", vs="actionformer_like"),
    )),
)
