"""Training engine on a tiny real synthetic feature set: two phases, determinism, resume."""

from __future__ import annotations

import shutil
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from amnet import engine
from amnet.config import Config, load_config
from amnet.data.dataset import TALDataset
from amnet.data.synthetic import generate_synthetic
from amnet.errors import ConfigError, ModelLoadError

TINY = ["data.synthetic.n_train=6", "data.synthetic.n_test=3", "data.synthetic.feature_dim=16",
        "data.feature_dim=16", "data.synthetic.num_classes=4", "data.num_classes=4",
        "data.synthetic.duration_scale=0.05", "data.max_seq_len=64", "model.fpn_levels=3",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "model.embed_dim=16",
        "model.n_heads=2", "model.gam_depth=1", "model.head_layers=1", "train.batch_size=2",
        "train.epochs=2", "train.lr=0.001", "train.warmup_epochs=0.5", "train.device=cpu",
        "train.eval_every=0"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(None, TINY)
    root = tmp_path_factory.mktemp("tiny_synthetic")
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    return root


def _setup(root: Path, *extra: str) -> tuple[Config, TALDataset, TALDataset]:
    cfg = load_config(None, [*TINY, *extra])
    train = TALDataset(cfg.data, cfg.data.train_subset, training=True, root=root,
                       seed=cfg.train.seed)
    test = TALDataset(cfg.data, cfg.data.test_subset, training=False, root=root,
                      classes=train.classes)
    return cfg, train, test


def _state(cfg: Config, train: TALDataset):
    engine.seed_everything(cfg.train.seed)
    loader = engine.make_loader(train, cfg, training=True)
    model = engine.build_model(cfg, cfg.data.feature_dim, len(train.classes))
    return engine.build_train_state(cfg, model, len(loader)), loader


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_two_phase_step_updates_ame_then_detector(data_root: Path) -> None:
    cfg, train, _ = _setup(data_root)
    state, loader = _state(cfg, train)
    feats, mask, segments, labels = engine.batch_to(next(iter(loader)), torch.device("cpu"))
    before = _snapshot(state.model)
    trip = engine.mask_phase(state, state.model, feats, mask, segments, cfg, torch.device("cpu"))
    assert trip.item() > 0
    after1 = _snapshot(state.model)
    for k in before:           # phase 1: AME parameters move, nothing else does
        assert torch.equal(before[k], after1[k]) != k.startswith("ame."), k
    det = engine.detect_phase(state, state.model, feats, mask, segments, labels, cfg,
                              torch.device("cpu"))
    assert det.num_pos > 0 and state.normalizer == det.num_pos
    after2 = _snapshot(state.model)
    moved = {k for k in before if not torch.equal(after1[k], after2[k])}
    # phase 2: the detector (GAM, heads, ω scales) and — through F̂ = F + AME(F) — the AME
    assert {k.split(".")[0] for k in moved} == {"ame", "gam", "heads"}
    assert "heads.omega_b" in moved and "heads.omega_m" in moved


def test_separate_ame_optimizer_keeps_the_triplet_moments_apart(data_root: Path,
                                                               tmp_path: Path) -> None:
    """``train.ame_optimizer=separate``: phase 1 steps the AME with its own AdamW (the main
    one holds no state after it), phase 2 with the main one; both go through a checkpoint."""
    cpu = torch.device("cpu")
    cfg, train, _ = _setup(data_root, "train.ame_optimizer=separate")
    state, loader = _state(cfg, train)
    assert state.ame_optimizer is not None
    feats, mask, segments, labels = engine.batch_to(next(iter(loader)), cpu)
    before = _snapshot(state.model)
    engine.mask_phase(state, state.model, feats, mask, segments, cfg, cpu)
    assert not state.optimizer.state and len(state.ame_optimizer.state) > 0
    moved = {k for k, v in _snapshot(state.model).items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("ame.") for k in moved)
    exp_avg = {id(p): s["exp_avg"].clone() for p, s in state.ame_optimizer.state.items()}
    engine.detect_phase(state, state.model, feats, mask, segments, labels, cfg, cpu)
    ame = state.model.ame_parameters()
    assert all(id(p) in {id(q) for q in state.optimizer.state} for p in ame)
    for p, s in state.ame_optimizer.state.items():      # phase 2 left the AME's own moments
        assert torch.equal(s["exp_avg"], exp_avg[id(p)])
    engine.save_checkpoint(tmp_path / "c.pt", state, cfg)
    loaded, _ = engine.load_checkpoint(tmp_path / "c.pt", cfg)
    for (pa, sa), (pb, sb) in zip(state.ame_optimizer.state.items(),
                                  loaded.ame_optimizer.state.items(), strict=True):
        assert pa.shape == pb.shape and torch.equal(sa["exp_avg"], sb["exp_avg"])
    shared_cfg, _, _ = _setup(data_root)
    assert _state(shared_cfg, train)[0].ame_optimizer is None       # the default: one AdamW


def test_phase_one_is_skipped_without_ame_or_lambda2(data_root: Path) -> None:
    for extra in (["model.ame=false"], ["loss.lambda2=0"]):
        cfg, train, _ = _setup(data_root, *extra)
        state, loader = _state(cfg, train)
        feats, mask, segments, _ = engine.batch_to(next(iter(loader)), torch.device("cpu"))
        before = _snapshot(state.model)
        trip = engine.mask_phase(state, state.model, feats, mask, segments, cfg,
                                 torch.device("cpu"))
        assert trip.item() == 0.0
        assert all(torch.equal(v, state.model.get_parameter(k)) for k, v in before.items())


def test_schedule_warms_up_then_anneals(data_root: Path) -> None:
    cfg, train, _ = _setup(data_root, "train.epochs=4", "train.warmup_epochs=1",
                           "train.eta_min=0.0")
    state, loader = _state(cfg, train)
    n = len(loader)
    lrs = []
    for _ in range(4 * n):
        lrs.append(state.optimizer.param_groups[0]["lr"])
        state.optimizer.step()
        state.scheduler.step()
    assert lrs[0] == pytest.approx(1e-6)                  # start_factor 1e-3
    assert lrs[n] == pytest.approx(1e-3)                  # peak after warm-up
    assert all(a <= b for a, b in pairwise(lrs[:n + 1]))
    assert all(a >= b for a, b in pairwise(lrs[n:]))
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_curve_and_different_seed_differs(data_root: Path) -> None:
    def curve(*extra: str) -> list[dict[str, float]]:
        cfg, train, _ = _setup(data_root, *extra)
        hist = engine.fit(cfg, train)["history"]
        return [{k: v for k, v in h.items() if k.startswith("loss/")} for h in hist]

    a, b = curve(), curve()
    assert a == b
    assert curve("train.seed=1") != a


def test_resume_gives_the_uninterrupted_results(data_root: Path, tmp_path: Path) -> None:
    cfg, train, test = _setup(data_root, "train.epochs=3", "train.ema=true",
                              "train.ema_decay=0.9")
    straight = engine.fit(cfg, train, checkpoint_dir=tmp_path / "a")

    def keep_first(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 0:
            shutil.copy(tmp_path / "b" / "last.pt", tmp_path / "epoch0.pt")

    cfg2, train2, _ = _setup(data_root, "train.epochs=3", "train.ema=true",
                             "train.ema_decay=0.9")
    engine.fit(cfg2, train2, checkpoint_dir=tmp_path / "b", callback=keep_first)
    resumed = engine.fit(cfg2, train2, checkpoint_dir=tmp_path / "c",
                         resume=tmp_path / "epoch0.pt")
    assert len(resumed["history"]) == 2
    for got, want in zip(resumed["history"], straight["history"][1:], strict=True):
        for k in ("loss/total", "loss/cls", "loss/reg", "loss/mat", "loss/trip", "lr"):
            assert got[k] == want[k], k
    for (k, v), w in zip(resumed["state"].model.state_dict().items(),
                         straight["state"].model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    # the EMA (inference) weights come back too, and predictions match
    model, stored_cfg, classes = engine.load_model_for_inference(tmp_path / "c" / "last.pt")
    assert classes == train.classes and stored_cfg == cfg2 and not model.training
    ref = straight["state"].eval_model
    x = test[0]["feats"][None]
    m = torch.ones(1, x.shape[-1], dtype=torch.bool)
    ref.eval()
    torch.testing.assert_close(model(x, m).cls_logits, ref(x, m).cls_logits)


def test_evaluate_scores_the_test_split(data_root: Path) -> None:
    cfg, train, test = _setup(data_root, "train.epochs=1")
    state = engine.fit(cfg, train)["state"]
    metrics, preds, result = engine.evaluate(state.model, test, cfg, "cpu")
    assert set(metrics) == {"mAP_0.3", "mAP_0.4", "mAP_0.5", "mAP_0.6", "mAP_0.7", "average_mAP"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert set(preds["results"]) == set(test.video_ids)
    assert result.n_ground_truth == sum(len(v.labels) for v in test.videos)


def test_fit_reports_validation_map_through_the_callback(data_root: Path) -> None:
    cfg, train, test = _setup(data_root, "train.epochs=2", "train.eval_every=1")
    seen: list[tuple[int, dict[str, float]]] = []
    engine.fit(cfg, train, test, callback=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [0, 1]
    for _, m in seen:
        # validation numbers carry their split in the name (never mistaken for test scores)
        assert {"loss/total", "loss/trip", "lr", "val/average_mAP", "val/mAP_0.5"} <= set(m)
        assert "average_mAP" not in m


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        engine.load_model_for_inference(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelLoadError, match="not an amnet checkpoint"):
        engine.load_checkpoint(foreign)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a readable torch checkpoint"):
        engine.load_model_for_inference(text)


def test_device_and_config_checks() -> None:
    assert engine.resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert engine.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA"):
            engine.resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="device"):
        engine.resolve_device("tpu")
    cfg = load_config(None, ["model.matching_head=false"])
    with pytest.raises(ConfigError, match="matching head"):
        engine.build_model(cfg, 8, 3)
    engine.build_model(cfg.replace("infer.confidence=sigmoid"), 8, 3)


@pytest.mark.parametrize("warmup", [0.0, 10.0])
def test_ema_update_follows_the_warmed_up_decay(warmup: float) -> None:
    """AveragedModel with ema_update_fn: W_n = d_n·W_{n-1} + (1−d_n)·x_n, d_n = min(decay,
    (1+n)/(warmup+n)) after n updates; warmup 0 is torch's own EMA."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    decay = 0.99
    net = torch.nn.Linear(1, 1, bias=False)
    ours = AveragedModel(net, multi_avg_fn=engine.ema_update_fn(decay, warmup), use_buffers=True)
    torchs = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    want = 0.0
    for step in range(300):
        with torch.no_grad():
            net.weight.fill_(float(step))
        ours.update_parameters(net)
        torchs.update_parameters(net)
        if step:  # the first update copies; `step` updates were done before this one
            d = decay if warmup == 0 else min(decay, (1 + step) / (warmup + step))
            want = d * want + (1 - d) * step
    got = float(ours.module.weight)
    assert got == pytest.approx(want, rel=1e-5)
    if warmup == 0:
        assert got == pytest.approx(float(torchs.module.weight), rel=1e-5)
    else:  # the first steps are forgotten: the average sits near the latest weights
        assert got > 250 > float(torchs.module.weight)
