"""Pretrained weights: every source (hub cache, state dict, safetensors, visionlab checkpoint), head replacement
bit for bit, the stem adaptations, and a clear WeightsError for every bad file. Weights are generated, never
downloaded."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from visionlab.engine import save_checkpoint
from visionlab.errors import CheckpointError, UserError, WeightsError
from visionlab.models import PretrainedWeights, ResNet18, build_model, imagenet_weights_path, load_weights, pretrained
from visionlab.models.pretrained import IMAGENET_MEAN, IMAGENET_STD, _first_line, imagenet_sha256_prefix


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


def _weights(tensors: dict[str, torch.Tensor], **kw) -> PretrainedWeights:
    return PretrainedWeights("given", Path("w.pth"), "torchvision state dict", dict(tensors), **kw)


def test_normalization_from_the_files_own_statistics_by_hand() -> None:
    three = _weights({}, mean=(0.1, 0.2, 0.6), std=(0.3, 0.4, 0.8))
    assert three.normalization(3) == ([0.1, 0.2, 0.6], [0.3, 0.4, 0.8])
    assert three.normalization(1) == ([(0.1 + 0.2 + 0.6) / 3], [(0.3 + 0.4 + 0.8) / 3])
    with pytest.raises(WeightsError, match=r"^w.pth: weights for 3-channel images cannot feed 2 channels$"):
        three.normalization(2)
    one = _weights({}, mean=(0.25,), std=(0.5,))
    assert one.normalization(1) == ([0.25], [0.5]) and one.normalization(3) == ([0.25] * 3, [0.5] * 3)
    assert _weights({}).normalization(3) == (list(IMAGENET_MEAN), list(IMAGENET_STD))


class _TinyNet(nn.Module):
    """A non-square stem (3x2) and a head: the stem adaptation on its own."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 2, (3, 2), bias=False)
        self.fc = nn.Linear(2, 4)

    def get_classifier(self) -> nn.Module:
        return self.fc


def test_a_non_square_stem_is_summed_and_resized_by_hand() -> None:
    torch.manual_seed(0)
    weight = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    net = _TinyNet().double()
    summary = _weights({"stem.weight": weight, "fc.weight": torch.zeros(9, 2)}).apply(net)
    gray = weight.sum(dim=1, keepdim=True)
    expected = F.interpolate(gray, size=(3, 2), mode="bilinear", antialias=True) * (5 * 4 / (3 * 2))
    assert net.stem.weight.dtype == torch.float64 and torch.equal(net.stem.weight, expected)
    assert summary == (
        "1 tensors from w.pth (torchvision state dict); stem: 3-channel filters summed to 1 channel, "
        "stem: 5x4 kernel resized to 3x2, head fc new (4 classes)"
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_a_resized_stem_is_computed_in_float32_or_better_and_stored_in_its_dtype(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    weight = torch.randn(2, 1, 5, 4).to(dtype)
    net = _TinyNet().to(dtype)
    _weights({"stem.weight": weight}).apply(net)
    expected = (F.interpolate(weight.float(), size=(3, 2), mode="bilinear", antialias=True) * (20 / 6)).to(dtype)
    assert net.stem.weight.dtype == dtype and torch.equal(net.stem.weight, expected)


def test_channel_only_and_kernel_only_adaptations_note_only_what_was_done(resnet18_state_file: Path) -> None:
    file = torch.load(resnet18_state_file, weights_only=True)
    small = {**file, "conv1.weight": file["conv1.weight"][:, :, 2:5, 2:5].contiguous()}  # RGB 3x3
    gray = ResNet18(num_classes=10, in_channels=1, small_input=True)
    summary = _weights(small).apply(gray)
    assert summary == (
        f"{len(file) - 2} tensors from w.pth (torchvision state dict); stem: 3-channel filters summed to 1 channel, "
        "head fc new (10 classes)"
    )
    assert torch.equal(gray.conv1.weight, small["conv1.weight"].sum(dim=1, keepdim=True))
    rgb = ResNet18(num_classes=10, in_channels=3, small_input=True)
    summary = _weights(file).apply(rgb)
    assert summary.endswith("(torchvision state dict); stem: 7x7 kernel resized to 3x3, head fc new (10 classes)")
    expected = F.interpolate(file["conv1.weight"], size=(3, 3), mode="bilinear", antialias=True) * (49 / 9)
    assert torch.equal(rgb.conv1.weight, expected)
    plain = ResNet18(num_classes=10)
    assert (
        _weights(file).apply(plain)
        == f"{len(file) - 2} tensors from w.pth (torchvision state dict); head fc new (10 classes)"
    )


def test_stems_that_cannot_be_adapted_are_reported_by_the_shape_check(resnet18_state_file: Path) -> None:
    file = torch.load(resnet18_state_file, weights_only=True)
    gray = ResNet18(num_classes=10, in_channels=1, small_input=True)
    for bad, shape in [((32, 3, 7, 7), "(32, 3, 7, 7)"), ((64, 3, 49), "(64, 3, 49)")]:
        with pytest.raises(
            WeightsError, match=rf"^w.pth: conv1.weight has shape {re.escape(shape)}, the model's is \(64, 1, 3, 3\)$"
        ):
            _weights({**file, "conv1.weight": torch.zeros(bad)}).apply(gray)
    with pytest.raises(
        WeightsError,
        match=r"^w.pth: conv1.weight takes 2 input channels, the model 3 \(only RGB -> grayscale is adapted\)$",
    ):
        _weights({**file, "conv1.weight": torch.zeros(64, 2, 7, 7)}).apply(ResNet18(num_classes=10))
    without_stem = {k: v for k, v in file.items() if k != "conv1.weight"}
    with pytest.raises(WeightsError, match=r"^w.pth: the weights do not fit ResNet18 \(missing conv1.weight\)$"):
        _weights(without_stem).apply(gray)


def test_the_misfit_message_lists_four_keys_of_each_then_counts_the_rest(resnet18_state_file: Path) -> None:
    file = torch.load(resnet18_state_file, weights_only=True)
    net = ResNet18(num_classes=10)
    five = {k: v for k, v in file.items() if not k.startswith("bn1.")}  # weight, bias, running_mean/var, count
    five.update({"extra.a": torch.zeros(1), "extra.b": torch.zeros(1), "fc.extra": torch.zeros(1)})  # head: dropped
    message = (
        r"^w.pth: the weights do not fit ResNet18 \(missing bn1.bias, bn1.num_batches_tracked, "
        r"bn1.running_mean, bn1.running_var \(\+1 more\); unexpected extra.a, extra.b\)$"
    )
    with pytest.raises(WeightsError, match=message):
        _weights(five).apply(net)
    four = {k: v for k, v in file.items() if not k.startswith("bn1.") or k == "bn1.num_batches_tracked"}
    message = (
        r"^w.pth: the weights do not fit ResNet18 \(missing bn1.bias, bn1.running_mean, "
        r"bn1.running_var, bn1.weight\)$"
    )
    with pytest.raises(WeightsError, match=message):
        _weights(four).apply(net)
    missing = {k: v for k, v in file.items() if not k.startswith(("bn1.", "layer1.0.bn1."))}
    message = (
        r"\(missing bn1.bias, bn1.num_batches_tracked, bn1.running_mean, bn1.running_var "
        r"\(\+6 more\)\)$"
    )
    with pytest.raises(WeightsError, match=message):
        _weights(missing).apply(net)
    with pytest.raises(
        WeightsError, match=r"^w.pth: layer1.0.conv1.weight has shape \(1,\), the model's is \(64, 64, 3, 3\)$"
    ):
        _weights({**file, "layer1.0.conv1.weight": torch.zeros(1)}).apply(net)


def test_a_network_without_a_convolution_or_a_linear_head() -> None:
    from visionlab.models import VisionTransformer

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.fc = nn.Linear(3, 3), nn.Linear(3, 2)

        def get_classifier(self) -> nn.Module:
            return self.fc

    source, target = Mlp(), Mlp()
    assert (
        _weights(source.state_dict()).apply(target)
        == "2 tensors from w.pth (torchvision state dict); head fc new (2 classes)"
    )
    assert torch.equal(target.body.weight, source.body.weight) and not torch.equal(target.fc.weight, source.fc.weight)

    kw = dict(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, window_block_indexes=())
    torch.manual_seed(0)
    vit, headless = VisionTransformer(**kw), VisionTransformer(**kw)
    headless.reset_classifier(0)
    summary = _weights(vit.state_dict()).apply(headless)
    assert (
        summary == f"{len(vit.state_dict()) - 2} tensors from w.pth (torchvision state dict); head head new (? classes)"
    )
    assert torch.equal(headless.pos_embed, vit.pos_embed)


def test_read_errors_are_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(
        WeightsError, match=rf"^{re.escape(str(tmp_path))}/empty.pth: cannot read the weights \(EOFError: \)$"
    ):
        load_weights(str(tmp_path / "empty.pth"), "resnet18")
    (tmp_path / "bad.pth").write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(WeightsError, match=r"/bad.pth: cannot read the weights \(corrupt, or not a PyTorch file\)$"):
        load_weights(str(tmp_path / "bad.pth"), "resnet18")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage!")
    with pytest.raises(Exception) as raw:
        safetensors.torch.load_file(bad)
    first = str(raw.value).strip().splitlines()[0]
    with pytest.raises(WeightsError, match=rf"^{re.escape(f'{bad}: cannot read the safetensors file ({first})')}$"):
        load_weights(str(bad), "resnet18")
    with pytest.raises(
        WeightsError, match=rf"^{re.escape(str(tmp_path))}/nope.pth: pretrained weights file not found$"
    ):
        load_weights(str(tmp_path / "nope.pth"), "resnet18")
    for name, value in [("list.pth", ["model", "model_args"]), ("empty-dict.pth", {}), ("ints.pth", {"a": 1})]:
        torch.save(value, tmp_path / name)
        with pytest.raises(WeightsError, match=rf"/{name}: not a state dict \(a mapping of names to tensors\)$"):
            load_weights(str(tmp_path / name), "resnet18")
    # weights_only is asked for explicitly, so even torch's opt-out switch does not make a file run code
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.save({"conv1.weight": torch.zeros(1), "evil": Path("x")}, tmp_path / "evil.pth")
    message = (
        r"/evil.pth: refused: it references pathlib.PosixPath \(loading it could execute "
        r"code\); a weights file holds only tensors, numbers, strings, lists and dicts$"
    )
    with pytest.raises(WeightsError, match=message):
        load_weights(str(tmp_path / "evil.pth"), "resnet18")


def test_first_line() -> None:
    assert _first_line(ValueError("")) == "" and _first_line(ValueError("  one\ntwo ")) == "one"


def test_state_dict_names_and_what_counts_as_a_checkpoint(tmp_path: Path) -> None:
    t = torch.arange(3.0)
    torch.save({"_orig_mod.module.a": t, "module._orig_mod.b": t, "net.c": t}, tmp_path / "p.pth")
    weights = load_weights(str(tmp_path / "p.pth"), "resnet18")
    # module. is stripped before _orig_mod.; "net." goes only with a stored Normalize
    assert list(weights.tensors) == ["module.a", "b", "net.c"]
    assert (weights.kind, weights.source, weights.mean, weights.std) == (
        "torchvision state dict",
        str(tmp_path / "p.pth"),
        None,
        None,
    )
    assert weights.path == tmp_path / "p.pth"
    for keys in (["model"], ["model_args"]):  # tensors of these names alone do not make a checkpoint
        torch.save(dict.fromkeys(keys, t), tmp_path / "one.pth")
        assert list(load_weights(str(tmp_path / "one.pth"), "resnet18").tensors) == keys

    state = {"net.w": t, "normalize.mean": torch.tensor([[[[0.5]]]]), "normalize.std": torch.tensor([[[[0.25]]]])}
    torch.save(state, tmp_path / "model.pth")
    weights = load_weights(str(tmp_path / "model.pth"), "resnet18")
    assert list(weights.tensors) == ["w"] and (weights.mean, weights.std) == ((0.5,), (0.25,))

    def checkpoint(name: str, model_args) -> str:
        torch.save({"model": state, "model_args": model_args}, tmp_path / name)
        return str(tmp_path / name)

    with pytest.raises(WeightsError, match=r"/odd.pth: a visionlab checkpoint of None, not of 'resnet18'$"):
        load_weights(checkpoint("odd.pth", ["resnet18"]), "resnet18")
    weights = load_weights(checkpoint("mean-only.pth", {"name": "resnet18", "mean": [0.1]}), "resnet18")
    assert weights.kind == "visionlab checkpoint" and (weights.mean, weights.std) == ((0.5,), (0.25,))
    assert weights.source == str(tmp_path / "mean-only.pth") and weights.path == tmp_path / "mean-only.pth"
    weights = load_weights(checkpoint("both.pth", {"name": "resnet18", "mean": [0.1], "std": [0.2]}), "resnet18")
    assert (weights.mean, weights.std) == ((0.1,), (0.2,)) and list(weights.tensors) == ["w"]


def test_imagenet_names_and_errors(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert imagenet_weights_path() == hub_cache / "resnet18-f37072fd.pth" and imagenet_sha256_prefix() == "f37072fd"
    with pytest.raises(WeightsError, match=r"^no ImageNet weights for model 'vit' \(they exist for resnet18\)$"):
        imagenet_weights_path("vit")
    message = (
        r"^ImageNet weights for resnet18 not found: put resnet18-f37072fd.pth \(from "
        r"https://download.pytorch.org/models/resnet18-f37072fd.pth\) at .*/resnet18-f37072fd.pth \(the torch "
        r"hub cache, \$TORCH_HOME/hub/checkpoints\); visionlab never downloads weights$"
    )
    with pytest.raises(WeightsError, match=message):
        load_weights("imagenet", "resnet18")
    for url in ("https://example.org/resnet18.pth", "https://example.org/resnet18-.pth"):
        monkeypatch.setattr(pretrained, "_imagenet_url", lambda model, url=url: url)
        name = url.rsplit("/", 1)[1]
        with pytest.raises(WeightsError, match=rf"^{re.escape(name)}: no SHA-256 prefix in the file name$"):
            imagenet_sha256_prefix("resnet18")


def test_imagenet_weights_are_read_as_a_state_dict(cached_imagenet_resnet18: Path) -> None:
    weights = load_weights("imagenet", "resnet18")
    assert (weights.kind, weights.source, weights.path) == (
        "torchvision state dict",
        "imagenet",
        cached_imagenet_resnet18,
    )


def test_files_are_loaded_onto_the_cpu_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resnet18_state_file: Path
) -> None:
    """A file saved from GPU tensors must come back on the CPU, whatever device the run uses: the arguments
    ``torch.load`` gets (recorded, then passed on) are what decides it."""
    calls, load = [], torch.load

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    load_weights(str(resnet18_state_file), "resnet18")
    assert calls == [((resnet18_state_file,), dict(map_location="cpu", weights_only=True))]


def test_every_reader_records_its_source_path_and_kind(tmp_path: Path, resnet18_state_file: Path) -> None:
    file = torch.load(resnet18_state_file, weights_only=True)
    save_file({k: v.contiguous() for k, v in file.items()}, tmp_path / "r18.safetensors")
    weights = load_weights(str(tmp_path / "r18.safetensors"), "resnet18")
    path = tmp_path / "r18.safetensors"
    assert (weights.source, weights.path, weights.kind) == (str(path), path, "safetensors")
    assert weights.tensors.keys() == file.keys() and (weights.mean, weights.std) == (None, None)


def test_the_hub_cache_file_is_checked_then_read_for_the_model_asked(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SHA-256 message whole; a visionlab checkpoint under the hub name is read as one (of the model asked)."""
    import hashlib

    hub_cache.mkdir(parents=True)
    path = imagenet_weights_path("resnet18")
    source = build_model("resnet18", num_classes=5, in_channels=1, image_size=28, mean=[0.3], std=[0.4])
    args = dict(name="resnet18", num_classes=5, in_channels=1, image_size=28, mean=[0.3], std=[0.4])
    save_checkpoint({"model": source.state_dict(), "config": {}, "model_args": args}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    message = rf"^{re.escape(str(path))}: SHA-256 {digest[:16]}\.\.\. does not begin with f37072fd, as the file name "
    message += r"promises: a corrupt or different file; replace it$"
    with pytest.raises(WeightsError, match=message):
        load_weights("imagenet", "resnet18")
    monkeypatch.setattr(pretrained, "imagenet_sha256_prefix", lambda model="resnet18": digest[:8])
    weights = load_weights("imagenet", "resnet18")
    assert (weights.kind, weights.source, weights.mean, weights.std) == (
        "visionlab checkpoint",
        "imagenet",
        (0.3,),
        (0.4,),
    )


def test_messages_that_list_models_or_need_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "IMAGENET_MODELS", ("resnet18", "resnet50"))
    with pytest.raises(
        WeightsError, match=r"^no ImageNet weights for model 'vit' \(they exist for resnet18, resnet50\)$"
    ):
        imagenet_weights_path("vit")
    (tmp_path / "w.safetensors").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if the package were not installed
    message = rf"^{re.escape(str(tmp_path))}/w.safetensors: reading safetensors files needs the safetensors package$"
    with pytest.raises(WeightsError, match=message):
        load_weights(str(tmp_path / "w.safetensors"), "resnet18")
