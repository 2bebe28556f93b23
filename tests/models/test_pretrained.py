"""Pretrained weights: every source (hub cache, state dict, safetensors, visionlab checkpoint), head replacement
bit for bit, the stem adaptations, and a clear WeightsError for every bad file. Weights are generated, never
downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from visionlab.engine import save_checkpoint
from visionlab.errors import CheckpointError, UserError, WeightsError
from visionlab.models import build_model, imagenet_weights_path, load_weights
from visionlab.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, imagenet_sha256_prefix


def _fresh(num_classes: int = 10, in_channels: int = 3, image_size: int = 128, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("resnet18", num_classes=num_classes, in_channels=in_channels, image_size=image_size)


def _assert_backbone_is(model, tensors: dict[str, torch.Tensor]) -> None:
    state = model.net.state_dict()
    for key, value in tensors.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key


def test_head_replacement_keeps_every_backbone_tensor_bit_equal(resnet18_state_file: Path) -> None:
    file = torch.load(resnet18_state_file, weights_only=True)
    model, untouched = _fresh(), _fresh()  # same seed: the same fresh head
    summary = load_weights(str(resnet18_state_file), "resnet18").apply(model)
    _assert_backbone_is(model, file)  # running statistics and num_batches_tracked included
    assert model.net.fc.weight.shape == (10, 512) and file["fc.weight"].shape == (1000, 512)
    assert torch.equal(model.net.fc.weight, untouched.net.fc.weight)  # the head is the fresh one
    assert torch.equal(model.net.fc.bias, untouched.net.fc.bias)
    assert "head fc new (10 classes)" in summary and "torchvision state dict" in summary


def test_weights_bring_their_normalization(resnet18_state_file: Path) -> None:
    weights = load_weights(str(resnet18_state_file), "resnet18")
    assert weights.normalization(3) == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    mean, std = weights.normalization(1)
    assert mean == pytest.approx([sum(IMAGENET_MEAN) / 3]) and std == pytest.approx([sum(IMAGENET_STD) / 3])


def test_a_visionlab_checkpoint_of_another_head_size(tmp_path: Path) -> None:
    source = build_model("resnet18", num_classes=5, in_channels=1, image_size=28, mean=[0.3], std=[0.4])
    args = dict(name="resnet18", num_classes=5, in_channels=1, image_size=28, mean=[0.3], std=[0.4])
    save_checkpoint({"model": source.state_dict(), "config": {}, "model_args": args}, tmp_path / "ckpt.pth.tar")

    weights = load_weights(str(tmp_path / "ckpt.pth.tar"), "resnet18")
    assert weights.kind == "visionlab checkpoint" and weights.normalization(1) == ([0.3], [0.4])
    target = _fresh(num_classes=10, in_channels=1, image_size=28)
    weights.apply(target)
    _assert_backbone_is(target, source.net.state_dict())
    assert target.net.fc.out_features == 10

    with pytest.raises(WeightsError, match=r"ckpt.pth.tar: a visionlab checkpoint of 'resnet18', not of 'improved'"):
        load_weights(str(tmp_path / "ckpt.pth.tar"), "improved")


def test_a_safetensors_file_and_wrapper_prefixes(tmp_path: Path, resnet18_state_file: Path) -> None:
    file = torch.load(resnet18_state_file, weights_only=True)
    save_file({f"module.{k}": v.contiguous() for k, v in file.items()}, tmp_path / "r18.safetensors")  # DDP names
    weights = load_weights(str(tmp_path / "r18.safetensors"), "resnet18")
    assert weights.kind == "safetensors"
    model = _fresh()
    weights.apply(model)
    _assert_backbone_is(model, file)


def test_the_imagenet_weights_come_from_the_hub_cache_only(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch, resnet18_state_file: Path
) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    path = imagenet_weights_path("resnet18")
    assert path == hub_cache / "resnet18-f37072fd.pth"  # torchvision's file name, under $TORCH_HOME/hub/checkpoints
    assert imagenet_sha256_prefix("resnet18") == "f37072fd"
    with pytest.raises(WeightsError) as info:
        load_weights("imagenet", "resnet18")
    message = str(info.value)
    assert f"put resnet18-f37072fd.pth (from https://download.pytorch.org/models/resnet18-f37072fd.pth) at {path}" in (
        message
    )
    assert "never downloads" in message and "\n" not in message
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, UserError)

    # The generated file under the real name: its SHA-256 does not begin with f37072fd.
    hub_cache.mkdir(parents=True)
    path.symlink_to(resnet18_state_file)
    with pytest.raises(WeightsError, match=r"f37072fd.pth: SHA-256 [0-9a-f]{16}\.\.\. does not begin with f37072fd"):
        load_weights("imagenet", "resnet18")


def test_a_cached_file_with_the_right_hash_loads(cached_imagenet_resnet18: Path, resnet18_state_file: Path) -> None:
    weights = load_weights("imagenet", "resnet18")
    assert weights.path == cached_imagenet_resnet18 and weights.source == "imagenet"
    model = _fresh()
    weights.apply(model)
    _assert_backbone_is(model, torch.load(resnet18_state_file, weights_only=True))


def test_rgb_7x7_weights_into_the_small_one_channel_stem(tmp_path: Path, resnet18_state_file: Path) -> None:
    """Summed over RGB, then resized 7x7 -> 3x3 times 49/9: a flat filter keeps its sum (its flat-image response)."""
    file = torch.load(resnet18_state_file, weights_only=True)
    file["conv1.weight"] = torch.full((64, 3, 7, 7), 0.01)
    torch.save(file, tmp_path / "flat.pth")
    model = _fresh(in_channels=1, image_size=28)
    summary = load_weights(str(tmp_path / "flat.pth"), "resnet18").apply(model)
    stem = model.net.conv1.weight
    assert stem.shape == (64, 1, 3, 3)
    torch.testing.assert_close(stem, torch.full_like(stem, 0.03 * 49 / 9))
    torch.testing.assert_close(stem.sum(dim=(1, 2, 3)), torch.full((64,), 0.03 * 49))
    assert "3-channel filters summed to 1 channel" in summary and "7x7 kernel resized to 3x3" in summary
    _assert_backbone_is(model, {k: v for k, v in file.items() if k != "conv1.weight"})


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b"\x80\x02not really a pickle"), "cannot read the weights"),
        (lambda p: p.write_bytes(torch.randn(3).numpy().tobytes()), "cannot read the weights"),
        (lambda p: torch.save([1, 2, 3], p), "not a state dict"),
        (lambda p: torch.save(build_model("simplenet", num_classes=10).net.state_dict(), p),
         "do not fit ResNet18 (missing bn1.bias, bn1.num_batches_tracked, bn1.running_mean, bn1.running_var (+"),
        (lambda p: torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra.w": torch.zeros(1)}, p),
         "unexpected extra.w"),
        (lambda p: torch.save({**build_model("resnet18", num_classes=10).net.state_dict(),
                               "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}, p),
         "layer1.0.conv1.weight has shape (64, 64, 1, 1), the model's is (64, 64, 3, 3)"),
        (lambda p: torch.save({**build_model("resnet18", num_classes=10).net.state_dict(),
                               "conv1.weight": torch.zeros(64, 2, 7, 7)}, p),
         "conv1.weight takes 2 input channels, the model 3"),
    ],
    ids=["corrupt", "garbage", "not-a-dict", "wrong-architecture", "unexpected-key", "wrong-shape", "2-channel-stem"],
)  # fmt: skip
def test_bad_files_are_a_weights_error_naming_the_file(tmp_path: Path, make, fragment: str) -> None:
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(WeightsError) as info:
        load_weights(str(path), "resnet18").apply(_fresh())
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_a_missing_file_and_a_pickle_that_runs_code(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope.pth: pretrained weights file not found"):
        load_weights(str(tmp_path / "nope.pth"), "resnet18")
    torch.save({"conv1.weight": torch.zeros(1), "evil": Path("x")}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match=r"evil.pth: refused: it references pathlib.PosixPath"):
        load_weights(str(tmp_path / "evil.pth"), "resnet18")
