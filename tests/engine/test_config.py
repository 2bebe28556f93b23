"""TrainConfig.validate: every field's range, the fields that constrain each other, and ConfigError itself."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from visionlab.engine import TrainConfig, Trainer
from visionlab.engine import config as config_module
from visionlab.engine import trainer as trainer_module
from visionlab.engine.config import Range, check_field
from visionlab.errors import ConfigError, UserError
from visionlab.recipes import RECIPES

# (field, bad value, fragment of the message): one row per bound of every field.
BAD = [
    ("data", "", "non-empty string"),
    ("data", None, "must be a non-empty string, got None"),
    ("data_root", "", "non-empty string or unset"),
    ("image_size", 7, "an integer in [8, 4096], got 7"),
    ("image_size", 4097, "an integer in [8, 4096]"),
    ("image_size", 32.0, "an integer in [8, 4096]"),
    ("limit_train", 0, "an integer >= 1, got 0"),
    ("limit_val", 0, "an integer >= 1, got 0"),
    ("workers", -1, "an integer >= 0, got -1"),
    ("workers", True, "an integer >= 0, got True"),
    ("check_images", "yes", "true or false"),
    ("model", "resnet", "unknown model 'resnet': must be one of improved, resnet18, simplenet, vit"),
    ("conv", "fast", "must be one of native, custom, got 'fast'"),
    ("model_kwargs", [1], "a mapping"),
    ("pretrained", "", "non-empty string or unset"),
    ("pretrained", 1, "non-empty string or unset"),
    ("freeze_backbone", "yes", "true or false"),
    ("unfreeze_at", 0, "an integer >= 1, got 0"),
    ("unfreeze_at", 1.5, "an integer >= 1"),
    ("head_lr_mult", 0.0, "a number > 0, got 0.0"),
    ("head_lr_mult", math.inf, "a number > 0"),
    ("epochs", 0, "an integer >= 1, got 0"),
    ("epochs", None, "an integer >= 1, got None"),  # not optional
    ("start_epoch", -1, "an integer >= 0, got -1"),
    ("batch_size", 0, "an integer >= 1, got 0"),
    ("optimizer", "adam", "must be one of sgd, adamw, got 'adam'"),
    ("lr", 0.0, "a number > 0, got 0.0"),
    ("lr", -0.1, "a number > 0"),
    ("lr", math.nan, "a number > 0, got nan"),
    ("lr", math.inf, "a number > 0, got inf"),
    ("momentum", -0.1, "a number in [0, 1), got -0.1"),
    ("momentum", 1.0, "a number in [0, 1), got 1.0"),
    ("weight_decay", -1e-4, "a number >= 0"),
    ("wd_exclude_norm_bias", 1, "true or false"),
    ("warmup", -2.0, "a number >= 0, got -2.0"),
    ("clip_grad", -1.0, "a number >= 0, got -1.0"),
    ("label_smoothing", 2.0, "a number in [0, 1), got 2.0"),
    ("label_smoothing", 1.0, "a number in [0, 1)"),
    ("label_smoothing", -0.1, "a number in [0, 1)"),
    ("adv_train", "free", "must be one of pgd, fgsm-rs, n-fgsm, trades, got 'free'"),
    ("adv_eps", 0.0, "a number in (0, 1], got 0.0"),
    ("adv_eps", 1.5, "a number in (0, 1], got 1.5"),
    ("adv_steps", 0, "an integer >= 1, got 0"),
    ("adv_step", -0.01, "a number in (0, 1]"),
    ("adv_step", 1.01, "a number in (0, 1], got 1.01"),
    ("adv_mix", 1.01, "a number in [0, 1], got 1.01"),
    ("adv_mix", -0.01, "a number in [0, 1], got -0.01"),
    ("trades_beta", -0.01, "a number >= 0, got -0.01"),
    ("noise_sigma", 0.0, "a number > 0, got 0.0"),
    ("noise_sigma", float("inf"), "a number > 0"),
    ("select_by", "loss", "must be one of clean, robust, got 'loss'"),
    ("robust_val", 0, "an integer >= 1, got 0"),
    ("tta", None, "true or false"),
    ("ema", 1.0, "a number in [0, 1), got 1.0"),
    ("ema", -0.1, "a number in [0, 1)"),
    ("swa_start", -1.0, "a number >= 0, got -1.0"),
    ("swa_start", "5", "a number >= 0"),
    ("swa_every", "batch", "must be one of epoch, steps, got 'batch'"),
    ("adv_eps_ramp", -0.5, "a number >= 0, got -0.5"),
    ("adv_eps_ramp", None, "a number >= 0, got None"),
    ("seed", -1, "an integer in [0, 2^64), got -1"),
    ("seed", 2**64, "an integer in [0, 2^64)"),
    ("device", "gpu", "must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("device", "cuda:x", "must be auto, cpu, cuda, cuda:N or mps"),
    ("device", "meta", "must be auto, cpu, cuda, cuda:N or mps"),
    ("device", 0, "must be auto, cpu, cuda, cuda:N or mps, got 0"),  # torch.device(0) is cuda:0
    ("amp", "no", "true or false"),
    ("channels_last", 0, "true or false"),
    ("compile", "fastest", "unknown torch.compile backend 'fastest': must be one of"),
    ("sync_bn", 1, "true or false"),
    ("cache_images", "no", "must be true, false or one of host, pinned, device, got 'no'"),
    ("cache_images", 1, "must be true, false or one of host, pinned, device, got 1"),
    ("gpu_augment", "yes", "true or false"),
    ("gpu_decode", 1, "true or false"),
    ("shuffle_labels", 1, "true or false"),
    ("augment", "flip,rotate=10", "'rotate=10' in 'flip,rotate=10': expected 'none' or comma-separated"),
    ("augment", 2, "must be a string such as 'flip,crop=2,erase=0.5', got 2"),
    ("deterministic", None, "true or false"),
    ("out", "", "non-empty string or unset"),
    ("print_freq", 0, "an integer >= 1, got 0"),
    ("tensorboard", "off", "true or false"),
    ("progress", 1, "true or false"),
    ("quiet", "yes", "true or false"),
]

# (field, value at the edge of its range): accepted.
EDGES = [
    ("image_size", 8), ("image_size", 4096), ("image_size", None), ("limit_train", 1), ("limit_val", None),
    ("workers", 0), ("epochs", 1), ("start_epoch", 0), ("batch_size", 1), ("lr", 1e-12), ("momentum", 0.0),
    ("momentum", 0.999), ("weight_decay", 0.0), ("warmup", 0.0), ("warmup", 1000.0), ("clip_grad", 0.0),
    ("label_smoothing", 0.0), ("label_smoothing", 0.999), ("seed", 0), ("seed", 2**64 - 1), ("device", "auto"),
    ("device", "cpu"), ("device", "cuda"), ("device", "cuda:1"), ("device", "mps"), ("print_freq", 1),
    ("conv", "custom"), ("model", "vit"), ("optimizer", "adamw"), ("lr", 3), ("pretrained", None),
    ("pretrained", "weights.pth"), ("freeze_backbone", True), ("unfreeze_at", None), ("head_lr_mult", 1e-6),
    ("head_lr_mult", 100.0), ("ema", 0.0), ("ema", 0.9999), ("limit_val", 1), ("adv_eps", 1.0), ("adv_eps", 1e-9),
    ("adv_steps", 1), ("adv_step", 1.0), ("adv_step", 1e-9), ("adv_mix", 0.0), ("adv_mix", 1.0), ("trades_beta", 0.0),
    ("noise_sigma", None), ("noise_sigma", 1e-9), ("noise_sigma", 2.0),
    ("swa_start", None), ("swa_start", 0.0), ("swa_start", 90.0), ("swa_every", "steps"), ("adv_eps_ramp", 0.0),
    ("robust_val", 1), ("augment", "none"), ("augment", None), ("compile", None), ("data_root", None), ("out", None),
]  # fmt: skip


def test_every_field_has_a_rule_and_every_bad_row_names_a_field() -> None:
    names = {f.name for f in fields(TrainConfig)}
    assert set(config_module._RULES) == names
    assert {field for field, _, _ in BAD} == names  # every field has at least one out-of-range test


@pytest.mark.parametrize(("field", "value", "fragment"), BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_out_of_range_value_names_the_field_and_the_range(field: str, value: Any, fragment: str) -> None:
    cfg = TrainConfig(**{field: value})
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(info.value) == f"{field}: {info.value.message}"


@pytest.mark.parametrize(("field", "value"), EDGES, ids=[f"{f}={v!r}" for f, v in EDGES])
def test_values_at_the_edge_of_the_range_are_accepted(field: str, value: Any) -> None:
    check_field(field, value)
    cfg = TrainConfig(**{"data": "folder:/x", field: value})  # a file dataset: any image size
    assert cfg.validate() is cfg


def test_defaults_and_every_recipe_validate() -> None:
    TrainConfig().validate()
    for (model, kind), recipe in RECIPES.items():
        data = {None: "folder:/x", "fashion-mnist": "fashion-mnist"}[kind]
        TrainConfig(model=model, data=data, **recipe).validate()


def test_start_epoch_must_lie_below_epochs() -> None:
    TrainConfig(epochs=3, start_epoch=2).validate()
    with pytest.raises(ConfigError, match=r"must be in \[0, epochs\) = \[0, 3\), got 3") as info:
        TrainConfig(epochs=3, start_epoch=3).validate()
    assert info.value.field == "start_epoch"


def test_fine_tuning_fields_that_constrain_each_other() -> None:
    TrainConfig(model="resnet18", pretrained="imagenet", freeze_backbone=True, unfreeze_at=2, epochs=3).validate()
    TrainConfig(freeze_backbone=True, unfreeze_at=1, epochs=2).validate()  # the lowest and the highest allowed
    cases = [
        (dict(model="simplenet", pretrained="imagenet"), "pretrained", "ImageNet weights exist for resnet18, not "
         "'simplenet'"),
        (dict(unfreeze_at=2, epochs=3), "unfreeze_at", "needs freeze_backbone"),
        (dict(freeze_backbone=True, unfreeze_at=3, epochs=3), "unfreeze_at", "must be in [1, epochs) = [1, 3), got 3"),
    ]  # fmt: skip
    for values, field, fragment in cases:
        with pytest.raises(ConfigError) as info:
            TrainConfig(**values).validate()
        assert info.value.field == field and fragment in info.value.message


def test_custom_conv_needs_a_model_that_takes_one() -> None:
    TrainConfig(model="simplenet", conv="custom").validate()
    with pytest.raises(ConfigError, match="model 'vit' takes no convolution type") as info:
        TrainConfig(model="vit", conv="custom").validate()
    assert info.value.field == "conv"


@pytest.mark.parametrize(
    ("data", "size", "fragment"),
    [("fashion-mnist", 64, "fashion-mnist images are 28x28: must be 28 or unset, got 64"),
     ("fashion-mnist:/some/dir", 32, "fashion-mnist images are 28x28"),
     ("cifar10:/some/dir", 28, "cifar10 images are 32x32: must be 32 or unset, got 28")],
)  # fmt: skip
def test_image_size_of_fixed_size_datasets(data: str, size: int, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        TrainConfig(data=data, image_size=size).validate()
    assert info.value.field == "image_size"
    TrainConfig(data=data, image_size=28 if "fashion" in data else 32).validate()


def test_image_size_the_architecture_cannot_take() -> None:
    TrainConfig(data="folder:/x", model="vit", image_size=96).validate()  # 96 = 6 patches of 16
    with pytest.raises(ConfigError, match="image size 100 is not a multiple of the patch size 16") as info:
        TrainConfig(data="folder:/x", model="vit", image_size=100).validate()
    assert info.value.field == "image_size"
    with pytest.raises(ConfigError, match="window_block_indexes") as info:
        TrainConfig(data="folder:/x", model="vit", image_size=128, model_kwargs={"depth": 1}).validate()
    assert info.value.field == "model_kwargs"


def test_from_dict_rejects_unknown_keys_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown config keys \['turbo'\]"):
        TrainConfig.from_dict({"turbo": True})


def test_config_error_str_field_and_classes() -> None:
    err = ConfigError("must be >= 1, got 0", field="epochs")
    assert (str(err), err.message, err.field) == ("epochs: must be >= 1, got 0", "must be >= 1, got 0", "epochs")
    bare = ConfigError("inconsistent")
    assert (str(bare), bare.field) == ("inconsistent", None)
    assert isinstance(err, UserError) and isinstance(err, ValueError)


@pytest.mark.parametrize(
    ("rng", "text"),
    [(Range(1, integer=True), "an integer >= 1"), (Range(0, low_open=True), "a number > 0"),
     (Range(0, 1, high_open=True), "a number in [0, 1)"), (Range(0.5, 2.5), "a number in [0.5, 2.5]"),
     (Range(high=3, high_open=True), "a number < 3"), (Range(), "a number")],
)  # fmt: skip
def test_range_says_itself(rng: Range, text: str) -> None:
    assert str(rng) == text


def test_trainer_validates_before_reading_data_or_writing_a_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_data(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("data was read before the configuration was validated")

    monkeypatch.setattr(trainer_module, "load_dataset", no_data)
    with pytest.raises(ConfigError, match=r"label_smoothing: must be a number in \[0, 1\), got 2.0"):
        Trainer(TrainConfig(label_smoothing=2.0, out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_to_dict_and_from_dict_round_trip_and_missing_keys_default() -> None:
    cfg = TrainConfig(data="folder:/x", epochs=7, lr=0.25, model_kwargs={"width": 2}, adv_train="pgd")
    stored = cfg.to_dict()
    assert stored["epochs"] == 7 and stored["lr"] == 0.25 and stored["model_kwargs"] == {"width": 2}
    assert list(stored) == [f.name for f in fields(TrainConfig)]
    assert TrainConfig.from_dict(stored) == cfg
    assert TrainConfig.from_dict({"epochs": 2}) == TrainConfig(epochs=2)  # keys an older version lacked: defaults


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data", "", "data: must be a non-empty string, got ''"),
        ("out", 3, "out: must be a non-empty string or unset, got 3"),
        ("model", "lenet", "model: unknown model 'lenet': must be one of REGISTERED"),
        ("conv", "fast", "conv: must be one of native, custom, got 'fast'"),
        ("adv_train", "free", "adv_train: must be one of pgd, fgsm-rs, n-fgsm, trades, got 'free'"),
        ("model_kwargs", {1: 2}, "model_kwargs: must be a mapping of option names to values, got {1: 2}"),
    ],
)
def test_whole_messages_of_the_text_choice_and_mapping_rules(field: str, value: Any, message: str) -> None:
    from visionlab.models import list_models

    with pytest.raises(ConfigError) as info:
        check_field(field, value)
    assert str(info.value) == message.replace("REGISTERED", ", ".join(list_models()))


def test_optional_rules_accept_none_and_check_anything_else() -> None:
    for field in ("adv_train", "data_root", "out", "adv_step", "image_size"):
        check_field(field, None)
    with pytest.raises(ConfigError, match=r"^adv_step: "):
        check_field("adv_step", 0.0)


@pytest.mark.parametrize(
    ("rng", "text"),
    [(Range(high=3), "a number <= 3"), (Range(0.0, 1.0), "a number in [0, 1]"), (Range(2.0), "a number >= 2"),
     (Range(0.5, low_open=True, integer=True), "an integer > 0.5")],
)  # fmt: skip
def test_range_says_itself_with_closed_ends_and_whole_floats(rng: Range, text: str) -> None:
    assert str(rng) == text


def test_a_path_with_a_colon_keeps_its_datasets_fixed_size() -> None:
    with pytest.raises(ConfigError, match="cifar10 images are 32x32") as info:
        TrainConfig(data="cifar10:/data/c:10", image_size=28).validate()  # the kind is before the first colon
    assert info.value.field == "image_size"


def test_the_architecture_is_checked_with_the_per_size_defaults() -> None:
    """ViT at 28 pixels takes 4-pixel patches (its per-size defaults), where the generic 16 would not divide."""
    TrainConfig(data="folder:/x", model="vit", image_size=28).validate()
