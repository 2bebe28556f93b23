"""Registry, Normalize and SimpleNet: the original architecture layer for layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.engine import load_checkpoint, model_from_checkpoint, save_checkpoint
from visionlab.errors import ConfigError
from visionlab.models import (
    ImageClassifier,
    Normalize,
    SimpleNet,
    architecture_kwargs,
    build_model,
    list_models,
    register_model,
    registry,
    resolve_conv,
    wrap_model,
)
from visionlab.ops import CustomConv2d


def test_normalize_is_first_layer_and_matches_by_hand() -> None:
    model = build_model("simplenet", num_classes=10, in_channels=3, mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 2.0])
    assert isinstance(model, ImageClassifier) and isinstance(model.normalize, Normalize)
    x = torch.rand(2, 3, 8, 8)
    expected = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x), expected)
    assert "normalize.mean" in model.state_dict()
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        model.normalize(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.5], [0.0])


def test_simplenet_is_the_original_architecture() -> None:
    net = SimpleNet(num_classes=100, in_channels=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    spec = [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs]
    assert spec == [
        (3, 64, (7, 7), (2, 2), (3, 3)),
        (64, 64, (1, 1), (1, 1), (0, 0)),
        (64, 64, (3, 3), (1, 1), (1, 1)),
        (64, 256, (1, 1), (1, 1), (0, 0)),
        (256, 128, (1, 1), (1, 1), (0, 0)),
        (128, 128, (3, 3), (1, 1), (1, 1)),
        (128, 512, (1, 1), (1, 1), (0, 0)),
    ]
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2), (3, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in net.features) == 7
    assert net.fc.in_features == 512 and net.fc.out_features == 100
    x = torch.rand(2, 3, 128, 128)
    assert net.forward_features(x).shape == (2, 512, 16, 16)
    assert net(x).shape == (2, 100)


def test_conv_layer_is_injectable() -> None:
    built = []

    class Recording(nn.Conv2d):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    net = SimpleNet(num_classes=10, in_channels=1, conv_layer=Recording)
    assert len(built) == 7 and net(torch.rand(1, 1, 28, 28)).shape == (1, 10)


def test_registry_errors_and_listing() -> None:
    assert "simplenet" in list_models()
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope", num_classes=10)
    with pytest.raises(ValueError, match="conv must be one of"):
        build_model("simplenet", num_classes=10, conv="fast")
    with pytest.raises(ValueError, match="mean/std have 3 channels"):
        build_model("simplenet", num_classes=10, in_channels=1, mean=[0.5] * 3, std=[0.5] * 3)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 128)], ids=["1x28x28", "3x128x128"])
@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_registered_model_trains_one_step_and_round_trips(
    name: str, channels: int, size: int, tmp_path: Path
) -> None:
    """Smoke test over the registry at both input kinds (Fashion-MNIST, MiniPlaces): finite output, every trainable
    parameter gets a finite gradient, and the model rebuilds from a checkpoint's stored arguments alone."""
    torch.manual_seed(0)
    args = dict(name=name, num_classes=10, in_channels=channels, image_size=size, mean=[0.4] * channels,
                std=[0.3] * channels, conv="native", **architecture_kwargs(name, size))  # fmt: skip
    model = build_model(**args)
    x = torch.rand(2, channels, size, size)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.arange(2)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname

    save_checkpoint({"model": model.state_dict(), "config": {}, "model_args": args}, tmp_path / "m.pth.tar")
    rebuilt = model_from_checkpoint(load_checkpoint(tmp_path / "m.pth.tar"))
    torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_register_model_records_the_builder_its_flags_summary_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {})
    calls = []

    def sized(image_size: int) -> dict:
        return {"width": image_size // 2}

    def documented(**kwargs) -> nn.Module:
        """
        A tiny net.

        More text.
        """
        calls.append(kwargs)
        return nn.Linear(kwargs["in_channels"], kwargs["num_classes"])

    def bare(**kwargs) -> nn.Module:
        calls.append(kwargs)
        return nn.Linear(kwargs["in_channels"], kwargs["num_classes"])

    assert register_model("doc", takes_conv=True, defaults=sized)(documented) is documented
    assert register_model("bare")(bare) is bare
    assert list_models() == {"bare": "", "doc": "A tiny net."}
    assert registry.takes_conv("doc") and not registry.takes_conv("bare")
    assert architecture_kwargs("doc", 8, x=1) == {"width": 4, "x": 1} and architecture_kwargs("bare", 8) == {}
    assert architecture_kwargs("bare", 8, x=1) == {"x": 1}

    model = build_model("doc", num_classes=2, in_channels=1, image_size=8, conv="custom", width=3)
    assert calls == [dict(num_classes=2, in_channels=1, image_size=8, conv_layer=CustomConv2d, width=3)]
    assert model.net.weight.shape == (2, 1)
    build_model("bare", num_classes=4)
    assert calls[1] == dict(num_classes=4, in_channels=3, image_size=128)  # the defaults; no conv_layer

    with pytest.raises(ValueError, match=r"^model 'doc' is registered twice$"):
        register_model("doc")(bare)
    assert registry._REGISTRY["doc"].builder is documented and list_models()["doc"] == "A tiny net."


def test_the_registered_models_their_summaries_and_conv_types() -> None:
    assert list_models() == {
        "improved": "Batch-norm residual CNN (SimpleNet improved: BN, residual stages, zero-init blocks).",
        "resnet18": (
            "torchvision's ResNet-18 (1- or 3-channel stem, 3x3/1 stem below 64 px); --pretrained imagenet|PATH."
        ),
        "simplenet": "The original course SimpleNet (7 convs, no normalization layers).",
        "vit": "Vision Transformer (patch embedding, window + global attention, absolute position embedding).",
    }
    assert [registry.takes_conv(name) for name in sorted(list_models())] == [True, True, True, False]
    assert resolve_conv("native") is nn.Conv2d and resolve_conv("custom") is CustomConv2d
    with pytest.raises(ConfigError, match=r"^conv: conv must be one of \('native', 'custom'\), got 'NATIVE'$") as info:
        resolve_conv("NATIVE")
    assert info.value.field == "conv"
    with pytest.raises(
        ConfigError, match=r"^model: unknown model 'nope'; available: improved, resnet18, simplenet, vit$"
    ):
        registry.takes_conv("nope")


def test_per_size_defaults_fall_back_to_the_128_px_configuration() -> None:
    assert (
        architecture_kwargs("vit", 64)
        == architecture_kwargs("vit", 128)
        == dict(patch_size=16, embed_dim=192, depth=4, num_heads=4, window_size=4, window_block_indexes=(0, 2))
    )
    assert architecture_kwargs("vit", 32)["patch_size"] == 4 and architecture_kwargs("vit", 28)["stem_channels"] == 32
    assert (
        architecture_kwargs("improved", 64)
        == architecture_kwargs("improved", 128)
        == dict(widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), stem_stride=2, drop_path_rate=0.05, dropout=0.1)
    )
    assert architecture_kwargs("improved", 28) == dict(widths=(32, 64, 128), depths=(1, 1, 1), stem_stride=1)
    assert [architecture_kwargs("resnet18", size) for size in (28, 63, 64, 128)] == [
        {"small_input": True}, {"small_input": True}, {"small_input": False}, {"small_input": False}
    ]  # fmt: skip
    assert architecture_kwargs("simplenet", 28) == {}
    assert architecture_kwargs("vit", 28, depth=2)["depth"] == 2
    architecture_kwargs("vit", 28)["depth"] = 99  # a copy each time: the registered configuration is not edited
    assert architecture_kwargs("vit", 28)["depth"] == 6


def test_build_model_defaults_and_errors_are_exact() -> None:
    model = build_model("simplenet", num_classes=2)
    assert model.normalize.mean.flatten().tolist() == [0.5] * 3 and model.normalize.std.flatten().tolist() == [0.5] * 3
    assert model.net.features[0].in_channels == 3 and type(model.net.features[0]) is nn.Conv2d
    assert model.net is model.get_submodule("net") and model.net.fc.out_features == 2
    assert build_model("vit", num_classes=2, depth=1, window_block_indexes=()).net.image_size == 128
    gray = build_model("simplenet", num_classes=2, in_channels=1, mean=[0.25], std=[2.0])
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(gray(x), gray.net((x - 0.25) / 2.0), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match=r"^conv: conv must be one of \('native', 'custom'\), got 'fast'$") as info:
        build_model("simplenet", num_classes=10, conv="fast")
    assert info.value.field == "conv"
    with pytest.raises(ConfigError, match=r"^conv: model 'vit' does not take a convolution type \(conv='custom'\)$"):
        build_model("vit", num_classes=10, conv="custom")
    with pytest.raises(
        ConfigError, match=r"^model: unknown model 'nope'; available: improved, resnet18, simplenet, vit$"
    ):
        build_model("nope", num_classes=10)
    with pytest.raises(ValueError, match=r"^mean/std have 2 channels but the model takes 1$"):
        build_model("simplenet", num_classes=10, in_channels=1, mean=[0.5] * 2, std=[0.5] * 2)


def test_train_keeps_only_batch_norms_whose_own_parameters_are_all_frozen_in_eval() -> None:
    class WithChild(nn.BatchNorm2d):
        def __init__(self) -> None:
            super().__init__(2)
            self.extra = nn.Linear(1, 1)  # a trainable child: not the layer's own parameter

    frozen, partly, free, stats_only, child = (nn.BatchNorm2d(2), nn.BatchNorm2d(2), nn.BatchNorm2d(2),
                                               nn.BatchNorm2d(2, affine=False), WithChild())  # fmt: skip
    frozen.requires_grad_(False)
    partly.bias.requires_grad_(False)
    child.weight.requires_grad_(False)
    child.bias.requires_grad_(False)
    model = ImageClassifier(Normalize([0.5] * 2, [0.5] * 2), nn.Sequential(frozen, partly, free, stats_only, child))
    assert model.eval().train() is model and model.training and model.net.training
    assert [m.training for m in model.net] == [False, True, True, True, False]
    assert model.train(False) is model and not any(m.training for m in model.modules())


def test_wrap_model_puts_normalize_in_front_of_any_module_and_shares_its_parameters():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    wrapped = wrap_model(net, mean=mean, std=std)
    x = torch.rand(2, 3, 4, 4)
    by_hand = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(wrapped(x), by_hand)
    assert wrapped.net is net
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in net.parameters()}


def test_wrap_model_refuses_what_is_not_a_module_and_mismatched_statistics():
    with pytest.raises(TypeError, match=r"nn\.Module"):
        wrap_model(lambda x: x, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="channels"):
        wrap_model(torch.nn.Identity(), mean=(0.5, 0.5), std=(0.5,))


def test_each_model_registers_in_the_file_that_defines_it_and_the_registry_imports_none() -> None:
    import ast

    assert {name: entry.builder.__module__ for name, entry in registry._REGISTRY.items()} == {
        "simplenet": "visionlab.models.simplenet", "improved": "visionlab.models.improved",
        "resnet18": "visionlab.models.resnet", "vit": "visionlab.models.vit",
    }  # fmt: skip
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m for m in imported if m.startswith("visionlab.models")} == {"visionlab.models.normalize"}
