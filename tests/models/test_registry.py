"""Registry, Normalize and SimpleNet: the original architecture layer for layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from visionlab.engine import load_checkpoint, model_from_checkpoint, save_checkpoint
from visionlab.models import ImageClassifier, Normalize, SimpleNet, architecture_kwargs, build_model, list_models


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
