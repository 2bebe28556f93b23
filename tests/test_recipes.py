"""visionlab.recipes: which recipe a model gets on a dataset kind."""

from __future__ import annotations

from visionlab.recipes import RECIPES, recipe_for


def test_the_dataset_recipe_then_the_models_own_then_none() -> None:
    assert recipe_for("vit", "fashion-mnist") == RECIPES[("vit", "fashion-mnist")]
    assert recipe_for("vit", "cifar10") == RECIPES[("vit", None)]  # no CIFAR-10 recipe: the model's own
    assert recipe_for("simplenet", "cifar10") == {}  # neither
    assert recipe_for("resnet18", "fashion-mnist") == {}


def test_a_recipe_is_a_copy_the_caller_may_change() -> None:
    recipe = recipe_for("simplenet", "fashion-mnist")
    recipe["lr"] = 1.0
    assert RECIPES[("simplenet", "fashion-mnist")]["lr"] == 3e-3
