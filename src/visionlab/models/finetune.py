"""Fine-tuning helpers: which parameters are the classifier head, and freezing the rest (the backbone).

Every registered network exposes its classifier through ``get_classifier()`` (timm's API); the head is that
module, the backbone everything else (the ``Normalize`` buffers have no parameters). Freezing sets
``requires_grad=False``; :class:`~visionlab.models.ImageClassifier` then keeps the frozen batch-norm layers in
eval mode whenever the model is put in training mode, so their running statistics do not move either.
"""

from __future__ import annotations

from torch import nn

__all__ = ["head_name", "set_backbone_frozen", "split_head"]


def head_name(model: nn.Module) -> str:
    """The qualified module name of ``model``'s classifier head (``"net.fc"`` for a registry ResNet-18)."""
    for name, module in model.named_modules():
        get_classifier = getattr(module, "get_classifier", None)
        if callable(get_classifier):
            head = get_classifier()
            for sub_name, sub in module.named_modules():
                if sub is head:
                    return f"{name}.{sub_name}" if name else sub_name
    raise ValueError(f"{type(model).__name__} has no classifier head (no get_classifier()) to fine-tune")


def split_head(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """``(backbone, head)``: the named parameters outside and inside the classifier head, in module order."""
    prefix = head_name(model) + "."
    backbone, head = [], []
    for name, p in model.named_parameters():
        (head if name.startswith(prefix) else backbone).append((name, p))
    return backbone, head


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (``requires_grad=False``) or unfreeze every parameter outside the classifier head; the head always
    trains. Re-applies the model's current mode, so frozen batch-norm layers switch to eval at once."""
    backbone, head = split_head(model)
    for _, p in backbone:
        p.requires_grad_(not frozen)
    for _, p in head:
        p.requires_grad_(True)
    model.train(model.training)
