"""The I3D encoder: state-dict layout of the public port, shapes, eval mode, checkpoint I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amnet.errors import AmnetError, ModelLoadError
from amnet.extract.i3d import I3D, _same_padding, load_i3d, load_state_dict_checked


def seeded(width: float = 0.25, seed: int = 0, **kw) -> I3D:
    torch.manual_seed(seed)
    model = I3D(width=width, **kw).eval()
    # non-trivial BN statistics, so a load that skipped them would show in the features
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def clip(batch: int = 2, frames: int = 16, size: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=g) * 2 - 1


def test_state_dict_layout_is_the_public_ports():
    sd = I3D().state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["Conv3d_2b_1x1.conv3d.weight"] == (64, 64, 1, 1, 1)
    assert shapes["Conv3d_2c_3x3.conv3d.weight"] == (192, 64, 3, 3, 3)
    assert shapes["Mixed_3b.b1b.conv3d.weight"] == (128, 96, 3, 3, 3)
    assert shapes["Mixed_4b.b0.conv3d.weight"] == (192, 480, 1, 1, 1)
    assert shapes["Mixed_5c.b3b.bn.running_var"] == (128,)
    assert shapes["logits.conv3d.weight"] == (400, 1024, 1, 1, 1)
    assert shapes["logits.conv3d.bias"] == (400,)
    blocks = {k.split(".")[0] for k in sd}
    assert blocks == {"Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "Mixed_3b", "Mixed_3c",
                      "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b",
                      "Mixed_5c", "logits"}
    assert {k.split(".")[1] for k in sd if k.startswith("Mixed_4d")} == {
        "b0", "b1a", "b1b", "b2a", "b2b", "b3b"}
    assert all(not k.startswith("Conv") or k.split(".")[1] in ("conv3d", "bn") for k in sd)
    assert not any(k.startswith("Conv") and "conv3d.bias" in k for k in sd)  # bias-free convs
    assert I3D().Conv3d_1a_7x7.bn.eps == pytest.approx(1e-3)


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    ((16, 224, 224), (7, 7, 7), (2, 2, 2), [2, 3, 2, 3, 2, 3]),   # even: extra pad at the end
    ((15, 113, 97), (7, 7, 7), (2, 2, 2), [3, 3, 3, 3, 3, 3]),    # odd: symmetric
    ((8, 56, 56), (1, 3, 3), (1, 2, 2), [0, 1, 0, 1, 0, 0]),
    ((3, 7, 7), (2, 2, 2), (2, 2, 2), [0, 1, 0, 1, 0, 1]),
    ((4, 14, 14), (2, 2, 2), (2, 2, 2), [0, 0, 0, 0, 0, 0]),
])
def test_tf_same_padding(size, kernel, stride, expected):
    assert _same_padding(size, kernel, stride) == expected


def test_full_i3d_at_224_gives_1024_d_features():
    """The one test of the full-size network (16×224×224, about a second on CPU)."""
    model = I3D().eval()
    x = clip(batch=1, frames=16, size=224)
    with torch.inference_mode():
        trunk = model.trunk(x)
        feats = model(x)
    assert trunk.shape == (1, 1024, 2, 7, 7)  # the port's AvgPool3d([2, 7, 7]) → 1×1×1
    assert feats.shape == (1, 1024) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, trunk.mean(dim=(2, 3, 4)))
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize(("frames", "size"), [(16, 64), (5, 48), (1, 33), (32, 32)])
def test_any_window_and_crop_give_one_vector(frames, size):
    model = seeded()
    with torch.inference_mode():
        out = model(clip(batch=2, frames=frames, size=size))
    assert out.shape == (2, model.feature_dim) == (2, 256)


def test_eval_mode_features_do_not_depend_on_the_batch():
    model = seeded()
    x = clip(batch=3)
    with torch.inference_mode():
        together = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(3)])
        again = model(x)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert torch.equal(together, again)  # deterministic
    assert not torch.allclose(together[0], together[1])  # different clips, different features


def test_random_init_round_trips_through_a_checkpoint(tmp_path: Path):
    model = seeded(seed=3)
    path = tmp_path / "rgb_test.pt"
    torch.save(model.state_dict(), path)
    loaded = load_i3d(path, width=0.25)
    assert not loaded.training
    assert (loaded.num_classes, loaded.in_channels) == (400, 3)
    x = clip()
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
        assert torch.equal(model.classify(x), loaded.classify(x))
    other = seeded(seed=4)
    with torch.inference_mode():
        assert not torch.allclose(model(x), other(x))  # the weights matter


def test_old_style_files_load(tmp_path: Path):
    """Files from old PyTorch (no num_batches_tracked) or nn.DataParallel ("module.")."""
    model = seeded(seed=5, num_classes=157)  # e.g. a Charades head
    sd = {f"module.{k}": v for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(sd, path)
    loaded = load_i3d(path, width=0.25)
    assert loaded.num_classes == 157
    x = clip(batch=1)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)  # wrapped
    with torch.inference_mode():
        assert torch.equal(model(x), load_i3d(path, width=0.25)(x))


def test_full_width_checkpoint_loads_without_logits(tmp_path: Path):
    model = I3D(num_classes=0).eval()
    path = tmp_path / "trunk_only.pt"
    torch.save(model.state_dict(), path)
    loaded = load_i3d(path)
    assert loaded.logits is None and loaded.feature_dim == 1024
    with pytest.raises(ModelLoadError, match="no logits"):
        loaded.classify(clip(batch=1, size=32))


def test_mismatched_checkpoint_names_the_keys(tmp_path: Path):
    path = tmp_path / "small.pt"
    torch.save(seeded().state_dict(), path)
    with pytest.raises(ModelLoadError) as e:
        load_i3d(path, width=1.0)  # a width-0.25 file into the real network
    msg = str(e.value)
    assert str(path) in msg and "mis-shaped keys" in msg
    assert "Conv3d_1a_7x7.conv3d.weight: file (16, 3, 7, 7, 7) vs model (64, 3, 7, 7, 7)" in msg

    sd = seeded().state_dict()
    del sd["Mixed_4b.b0.conv3d.weight"]
    sd["Mixed_6a.b0.conv3d.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(ModelLoadError) as e:
        load_i3d(path, width=0.25)
    msg = str(e.value)
    assert "missing keys: Mixed_4b.b0.conv3d.weight" in msg
    assert "unexpected keys: Mixed_6a.b0.conv3d.weight" in msg


def test_a_resnet_style_file_is_rejected(tmp_path: Path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)},
               path)
    with pytest.raises(ModelLoadError, match=r"missing keys: .*\(\d+ in all\).*unexpected keys"):
        load_i3d(path)


@pytest.mark.parametrize("content", ["garbage", "pickle", "not_a_dict"])
def test_unloadable_files(tmp_path: Path, content):
    path = tmp_path / f"{content}.pt"
    if content == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 10)
    elif content == "pickle":  # arbitrary objects are refused by weights_only=True
        torch.save({"model": torch.nn.Linear(2, 2)}, path)
    else:
        torch.save([torch.zeros(2)], path)
    with pytest.raises(ModelLoadError, match=str(path.name)) as e:
        load_i3d(path)
    assert isinstance(e.value, AmnetError)


def test_missing_checkpoint_never_downloads(tmp_path: Path):
    with pytest.raises(ModelLoadError, match=r"not found.*never downloaded"):
        load_i3d(tmp_path / "rgb_imagenet.pt")


def test_flow_checkpoint_layout(tmp_path: Path):
    """A two-channel (flow) file loads as a flow I3D (in_channels read from the file)."""
    model = seeded(in_channels=2)
    path = tmp_path / "flow.pt"
    torch.save(model.state_dict(), path)
    loaded = load_i3d(path, width=0.25)
    assert loaded.in_channels == 2
    with torch.inference_mode():
        x = torch.rand(1, 2, 8, 32, 32)
        assert torch.equal(model(x), loaded(x))


def test_load_state_dict_checked_accepts_an_exact_match():
    model, other = seeded(seed=1), seeded(seed=2)
    load_state_dict_checked(other, model.state_dict(), "<memory>")
    x = clip(batch=1)
    with torch.inference_mode():
        assert torch.equal(model(x), other(x))
