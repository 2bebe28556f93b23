"""Head / backbone split and freezing: frozen batch norms stay in eval mode through ``model.train()``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionlab.models import build_model, list_models
from visionlab.models.finetune import head_name, set_backbone_frozen, split_head


def _batch_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_registered_model_names_its_head(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, image_size=28)
    head = head_name(model)
    assert model.get_submodule(head) is model.net.get_classifier() and model.get_submodule(head).out_features == 10
    backbone, head_params = split_head(model)
    assert [n for n, _ in head_params] == [f"{head}.weight", f"{head}.bias"]
    assert len(backbone) + 2 == len(list(model.parameters()))


def test_frozen_batch_norms_stay_in_eval_through_train_and_keep_their_statistics() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, in_channels=1, image_size=16)
    set_backbone_frozen(model, True)
    model.train()
    assert model.training and model.net.training
    assert _batch_norms(model) and all(not bn.training for bn in _batch_norms(model))
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("net.fc."))
    assert model.net.fc.weight.requires_grad and model.net.fc.bias.requires_grad
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.rand(4, 1, 16, 16)).sum().backward()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # running_mean/var and num_batches_tracked included
    assert model.net.conv1.weight.grad is None and model.net.fc.weight.grad is not None

    set_backbone_frozen(model, False)  # unfreezing puts them back in training mode at once
    assert all(bn.training for bn in _batch_norms(model))
    model.eval()
    model.train()
    assert all(bn.training for bn in _batch_norms(model)) and all(p.requires_grad for p in model.parameters())


def test_freezing_an_eval_model_keeps_it_in_eval() -> None:
    model = build_model("improved", num_classes=10, in_channels=1, image_size=28).eval()
    set_backbone_frozen(model, True)
    assert not model.training and all(not m.training for m in model.modules())


def test_head_names_of_bare_networks_and_a_network_without_a_head() -> None:
    from visionlab.models import ResNet18, VisionTransformer

    assert head_name(ResNet18(num_classes=3, small_input=True)) == "fc"
    vit = VisionTransformer(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, window_block_indexes=())
    assert head_name(vit) == "head" and head_name(nn.Sequential(nn.ReLU(), vit)) == "1.head"

    class Named(nn.Module):  # "fc" is a prefix of "fc_in" too: the split must go by the dotted name
        def __init__(self) -> None:
            super().__init__()
            self.fc_in, self.fc = nn.Linear(2, 2), nn.Linear(2, 1)

        def get_classifier(self) -> nn.Module:
            return self.fc

    backbone, head = split_head(Named())
    assert [n for n, _ in backbone] == ["fc_in.weight", "fc_in.bias"] and [n for n, _ in head] == [
        "fc.weight",
        "fc.bias",
    ]
    with pytest.raises(ValueError, match=r"^Sequential has no classifier head \(no get_classifier\(\)\) to fine-tune$"):
        head_name(nn.Sequential(nn.Linear(2, 2)))
