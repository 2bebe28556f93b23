"""visionlab.recipes: which recipe a model gets on a dataset kind, and the named recipes a user asks for."""

from __future__ import annotations

import pytest

from visionlab.engine import TrainConfig
from visionlab.errors import ConfigError
from visionlab.recipes import NAMED_RECIPES, RECIPES, named_recipe, recipe_for


def test_the_dataset_recipe_then_the_models_own_then_none() -> None:
    assert recipe_for("vit", "fashion-mnist") == RECIPES[("vit", "fashion-mnist")]
    assert recipe_for("vit", "cifar10") == RECIPES[("vit", None)]  # no CIFAR-10 recipe: the model's own
    assert recipe_for("simplenet", "cifar10") == {}  # neither
    assert recipe_for("resnet18", "fashion-mnist") == {}


def test_a_recipe_is_a_copy_the_caller_may_change() -> None:
    recipe = recipe_for("simplenet", "fashion-mnist")
    recipe["lr"] = 1.0
    assert RECIPES[("simplenet", "fashion-mnist")]["lr"] == 3e-3


def test_a_named_recipe_is_a_copy_of_its_values_for_its_own_model_and_data() -> None:
    recipe = named_recipe("robust", model="improved", data_kind="fashion-mnist")
    assert recipe == NAMED_RECIPES["robust"] and (recipe["model"], recipe["data"]) == ("improved", "fashion-mnist")
    recipe["lr"] = 1.0
    assert NAMED_RECIPES["robust"]["lr"] == 0.1
    assert named_recipe("robust") == NAMED_RECIPES["robust"]  # model and data not fixed by the caller


@pytest.mark.parametrize(
    ("name", "model", "kind", "message"),
    [
        ("fast", None, None, "unknown recipe 'fast'"),
        ("robust", "simplenet", None, "recipe 'robust' is not for --model simplenet --data fashion-mnist"),
        ("robust", None, "cifar10", "recipe 'robust' is not for --model improved --data cifar10"),
    ],
)
def test_an_unknown_name_or_another_models_data_is_refused_listing_the_known(
    name: str, model: str | None, kind: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        named_recipe(name, model=model, data_kind=kind)
    assert err.value.field == "recipe"
    assert err.value.message == f"{message}; known recipes: robust (--model improved --data fashion-mnist)"


def test_every_named_recipe_is_a_valid_config_for_its_model() -> None:
    """Layered as the CLI layers it (the model's own recipe under it), every named recipe validates."""
    for values in NAMED_RECIPES.values():
        TrainConfig(**{**recipe_for(values["model"], values["data"]), **values}).validate()
