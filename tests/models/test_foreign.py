"""Classifiers from outside visionlab (``models/foreign.py``), function by function on small inputs: which
torchvision names count, how a state dict is read and fitted (every message whole), how the number of classes is
read from the weights, how a factory file is imported, which statistics each path resolves to, and the one-image
check. The command line's use of them, end to end on resnet18, is ``tests/test_cli_foreign_model.py``."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from visionlab.errors import ModelLoadError, WeightsError
from visionlab.models import ImageClassifier
from visionlab.models.foreign import (
    check_classifier,
    factory_network,
    load_classifier,
    load_state_dict_strict,
    read_state_dict,
    resolve_normalization,
    torchvision_architectures,
    torchvision_network,
    torchvision_normalization,
)
from visionlab.models.pretrained import IMAGENET_MEAN, IMAGENET_STD

# squeezenet1_1: a small torchvision classifier (1.2 M parameters) whose classifier is a 1x1 convolution,
# ``classifier.1.weight`` of shape (1000, 512, 1, 1) and ``classifier.1.bias`` of shape (1000,).
ARCH = "squeezenet1_1"
HEAD_W, HEAD_B = "classifier.1.weight", "classifier.1.bias"
DEFAULT_HEAD = "the model's is (1000, 512, 1, 1)"

FACTORY = """
import torch
from torch import nn

VALUE = 3


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(x.flatten(1)[:, :2])


def build():
    torch.manual_seed(0)
    return Net()


def silent():
    raise RuntimeError()


def wordy():
    raise RuntimeError("  first line\\nsecond line")


def not_a_module():
    return 42
"""


def _error(call: Callable[[], object]) -> tuple[str | None, str]:
    """The ``(field, message)`` of the ModelLoadError ``call`` raises."""
    with pytest.raises(ModelLoadError) as info:
        call()
    return info.value.field, info.value.message


def _state(**classes: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.get_model(ARCH, weights=None, **classes).state_dict()


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(FACTORY, encoding="utf-8")
    return path


def test_torchvision_architectures_are_exactly_the_classification_builders() -> None:
    names = torchvision_architectures()
    assert names == torchvision.models.list_models(module=torchvision.models)
    assert {"resnet18", "vit_b_16", ARCH} <= set(names)
    assert not {"fasterrcnn_resnet50_fpn", "raft_large", "deeplabv3_resnet50"} & set(names)  # other tasks


def test_read_state_dict_strips_wrapper_prefixes(tmp_path: Path) -> None:
    weight, bias = torch.arange(6.0).reshape(3, 2), torch.tensor([1.0, 2.0, 3.0])
    torch.save({"module.fc.weight": weight, "_orig_mod.fc.bias": bias}, tmp_path / "w.pth")
    tensors = read_state_dict(tmp_path / "w.pth")
    assert list(tensors) == ["fc.weight", "fc.bias"]
    assert torch.equal(tensors["fc.weight"], weight) and torch.equal(tensors["fc.bias"], bias)
    torch.save({"net.fc.weight": weight, "normalize.mean": torch.zeros(3), "normalize.std": torch.ones(3)},
               tmp_path / "wrapped.pth")  # fmt: skip
    assert list(read_state_dict(str(tmp_path / "wrapped.pth"))) == ["fc.weight"]


def test_read_state_dict_refusals_name_the_file(tmp_path: Path) -> None:
    missing = _error(lambda: read_state_dict(tmp_path / "none.pth"))
    assert missing == ("weights", f"{tmp_path}/none.pth: no such weights file")
    assert _error(lambda: read_state_dict(tmp_path)) == ("weights", f"{tmp_path}: no such weights file")
    weights = {"fc.weight": torch.zeros(1)}
    for name, args in (("named", {"name": "simplenet"}), ("unnamed", {}), ("other", {"name": "XXXX"})):
        torch.save({"model": weights, "model_args": args}, tmp_path / f"{name}.pth")
        assert _error(lambda n=name: read_state_dict(tmp_path / f"{n}.pth")) == (
            "weights", f"{tmp_path}/{name}.pth: a visionlab checkpoint, not a state dict (load it as a checkpoint)",
        )  # fmt: skip
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError) as info:
        read_state_dict(tmp_path / "junk.pth")
    assert (info.value.field, info.value.message) == (
        "weights", f"{tmp_path}/junk.pth: cannot read the weights (corrupt, or not a PyTorch file)",
    )  # fmt: skip
    assert isinstance(info.value.__cause__, WeightsError)


def _three_linears() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(2, 1))  # keys 0.weight, 0.bias, ... 2.bias


def test_load_state_dict_strict_copies_every_tensor() -> None:
    model, source = _three_linears(), nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(2, 1))
    load_state_dict_strict(model, source.state_dict(), "w.pth")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())


def test_load_state_dict_strict_names_up_to_four_keys_and_copies_nothing_on_refusal() -> None:
    model = _three_linears()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = model.state_dict()
    assert _error(lambda: load_state_dict_strict(model, {}, "w.pth")) == (
        "weights", "w.pth: the weights do not fit Sequential (missing 0.bias, 0.weight, 1.bias, 1.weight (+2 more))",
    )  # fmt: skip
    four = {k: state[k] for k in ("2.weight", "2.bias")}
    assert _error(lambda: load_state_dict_strict(model, four, Path("w.pth"))) == (
        "weights", "w.pth: the weights do not fit Sequential (missing 0.bias, 0.weight, 1.bias, 1.weight)",
    )  # fmt: skip
    extra = {**state, "z": torch.zeros(1), "a": torch.zeros(1)}
    del extra["1.bias"]
    assert _error(lambda: load_state_dict_strict(model, extra, "w.pth")) == (
        "weights", "w.pth: the weights do not fit Sequential (missing 1.bias; unexpected a, z)",
    )  # fmt: skip
    for count, more in ((5, " (+1 more)"), (6, " (+2 more)")):
        many = {**state, **{f"x{i}": torch.zeros(1) for i in range(count)}}
        assert _error(lambda m=many: load_state_dict_strict(model, m, "w.pth"))[1] == (
            f"w.pth: the weights do not fit Sequential (unexpected x0, x1, x2, x3{more})"
        )
    shapes = {**state, "1.weight": torch.zeros(2, 4), "2.weight": torch.zeros(3)}
    assert _error(lambda: load_state_dict_strict(model, shapes, "w.pth")) == (
        "weights", "w.pth: 1.weight has shape (2, 4), the model's is (2, 3)",
    )  # fmt: skip
    partly = {**{k: torch.full_like(v, 7.0) for k, v in state.items()}, "2.bias": torch.zeros(2)}
    _error(lambda: load_state_dict_strict(model, partly, "w.pth"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_torchvision_network_reads_the_number_of_classes_from_the_classifier(tmp_path: Path) -> None:
    for classes, kwargs in ((3, {"num_classes": 3}), (1000, {})):
        state = _state(**kwargs)
        torch.save(state, tmp_path / "w.pth")
        model = torchvision_network(ARCH, tmp_path / "w.pth")
        assert model.state_dict()[HEAD_W].shape == (classes, 512, 1, 1) and model.num_classes == classes
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
        assert not any(m.training for m in model.modules())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # The head's trailing dimensions differ too: not a head of another size, so the default network is kept.
        ({HEAD_W: (3, 256, 1, 1), HEAD_B: (3,)}, f"{HEAD_W} has shape (3, 256, 1, 1), {DEFAULT_HEAD}"),
        ({HEAD_W: (3, 512), HEAD_B: (3,)}, f"{HEAD_W} has shape (3, 512), {DEFAULT_HEAD}"),
        # Two different class counts in the head.
        ({HEAD_W: (3, 512, 1, 1), HEAD_B: (4,)}, f"{HEAD_W} has shape (3, 512, 1, 1), {DEFAULT_HEAD}"),
        # A tensor outside the head (its first dimension is not 1000) differs.
        ({"features.0.weight": (32, 3, 3, 3)},
         "features.0.weight has shape (32, 3, 3, 3), the model's is (64, 3, 3, 3)"),
        # A 3-class head first in the file, and a feature tensor (first dimension 64, not 1000) of 3 rows too.
        ({HEAD_W: (3, 512, 1, 1), HEAD_B: (3,), "features.0.bias": (3,)},
         f"{HEAD_W} has shape (3, 512, 1, 1), {DEFAULT_HEAD}"),
    ],
)  # fmt: skip
def test_torchvision_network_refuses_weights_that_are_not_a_head_of_another_size(
    tmp_path: Path, changes: dict[str, tuple[int, ...]], expected: str
) -> None:
    state = _state()
    state.update({key: torch.zeros(shape) for key, shape in changes.items()})
    order = [*changes, *(key for key in state if key not in changes)]  # the changed tensors first, in that order
    torch.save({key: state[key] for key in order}, tmp_path / "w.pth")
    assert _error(lambda: torchvision_network(ARCH, tmp_path / "w.pth")) == ("weights", f"{tmp_path}/w.pth: {expected}")


def test_torchvision_network_refuses_an_unknown_name_with_close_ones_and_extra_keys(tmp_path: Path) -> None:
    tail = "; torchvision.models.list_models(module=torchvision.models) lists all)"
    for arch, close in (
        ("vit_zz", "vit_b_16, vit_b_32, vit_h_14, vit_l_16, vit_l_32"),
        ("vit-zz", "alexnet, convnext_base, convnext_large, convnext_small, convnext_tiny, densenet121"),
        ("regnet_z", "regnet_x_16gf, regnet_x_1_6gf, regnet_x_32gf, regnet_x_3_2gf, regnet_x_400mf, regnet_x_800mf"),
    ):
        assert _error(lambda a=arch: torchvision_network(a, tmp_path / "none.pth")) == (
            "arch", f"{arch!r} is not a torchvision classification architecture (e.g. {close}{tail}",
        )  # fmt: skip
    torch.save({**_state(num_classes=3), "extra.weight": torch.zeros(1000, 2)}, tmp_path / "w.pth")
    assert _error(lambda: torchvision_network(ARCH, tmp_path / "w.pth")) == (
        "weights", f"{tmp_path}/w.pth: the weights do not fit SqueezeNet (unexpected extra.weight)",
    )  # fmt: skip


def test_factory_network_imports_the_file_under_its_own_name_and_restores_sys_path(factory: Path) -> None:
    path_before = list(sys.path)
    model = factory_network(f"{factory}:build")
    name = "visionlab_factory_" + hashlib.sha256(str(factory.resolve()).encode()).hexdigest()[:12]
    assert type(model).__name__ == "Net" and type(model).__module__ == name and sys.modules[name].VALUE == 3
    assert sys.path == path_before and not model.training
    torch.manual_seed(0)
    assert torch.equal(model.fc.weight, nn.Linear(2, 3).weight)


def test_factory_network_imports_the_files_neighbours_first_and_splits_at_the_last_colon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's folder goes first on ``sys.path`` while it is imported (as ``python net.py`` would put it), so its
    neighbour wins over a module of the same name elsewhere on the path."""
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "helper_for_factory_test.py").write_text("WIDTH = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(decoy))
    folder = tmp_path / "a:b"
    folder.mkdir()
    (folder / "helper_for_factory_test.py").write_text("WIDTH = 5\n", encoding="utf-8")
    (folder / "net.py").write_text(
        "from torch import nn\nfrom helper_for_factory_test import WIDTH\n\n\n"
        "def build():\n    return nn.Linear(2, WIDTH)\n",
        encoding="utf-8",
    )
    path_before = list(sys.path)
    try:
        assert factory_network(f"{folder}/net.py:build").out_features == 5
    finally:
        sys.modules.pop("helper_for_factory_test", None)
    assert sys.path == path_before


def test_factory_network_loads_weights_strictly(factory: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    saved = {f"fc.{k}": v for k, v in nn.Linear(2, 3).state_dict().items()}
    torch.save(saved, tmp_path / "w.pth")
    model = factory_network(f"{factory}:build", tmp_path / "w.pth")
    assert torch.equal(model.fc.weight, saved["fc.weight"]) and not model.training
    torch.save({"fc.weight": saved["fc.weight"]}, tmp_path / "part.pth")
    assert _error(lambda: factory_network(f"{factory}:build", str(tmp_path / "part.pth"))) == (
        "weights", f"{tmp_path}/part.pth: the weights do not fit Net (missing fc.bias)",
    )  # fmt: skip


def test_factory_network_refusals_name_the_file(factory: Path, tmp_path: Path) -> None:
    usage = ": expected FILE.py:FUNCTION (e.g. models/net.py:build)"
    for spec in ("net.py", ":build", f"{factory}:", f"{factory}:not-a-name"):
        assert _error(lambda s=spec: factory_network(s)) == ("factory", f"{spec}{usage}")
    assert _error(lambda: factory_network(f"{tmp_path}:build")) == (
        "factory", f"{tmp_path}: no such file (from {tmp_path}:build)",
    )  # fmt: skip
    (tmp_path / "net.txt").write_text(FACTORY, encoding="utf-8")
    assert _error(lambda: factory_network(f"{tmp_path}/net.txt:build")) == (
        "factory", f"{tmp_path}/net.txt:build: {tmp_path}/net.txt is not a Python file",
    )  # fmt: skip
    for name in ("nope", "VALUE"):
        assert _error(lambda n=name: factory_network(f"{factory}:{n}")) == (
            "factory", f"{factory}: no function {name!r} in it (from {factory}:{name})",
        )  # fmt: skip
    for name, why in (("silent", "RuntimeError: "), ("wordy", "RuntimeError: first line")):
        assert _error(lambda n=name: factory_network(f"{factory}:{n}")) == (
            "factory", f"{factory}:{name}: {name}() raised {why}",
        )  # fmt: skip
    assert _error(lambda: factory_network(f"{factory}:not_a_module")) == (
        "factory", f"{factory}:not_a_module: not_a_module() returned a int, not a torch.nn.Module",
    )  # fmt: skip


def test_a_factory_file_whose_import_raises_leaves_no_module_and_no_path_behind(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise ImportError('no cuda here\\nat all')\n", encoding="utf-8")
    path_before, modules_before = list(sys.path), set(sys.modules)
    assert _error(lambda: factory_network(f"{path}:build")) == (
        "factory", f"{path}:build: importing {path} raised ImportError: no cuda here",
    )  # fmt: skip
    assert sys.path == path_before and set(sys.modules) == modules_before


def test_torchvision_normalization_reads_a_weights_enum(monkeypatch: pytest.MonkeyPatch) -> None:
    mean, std = torchvision_normalization("ResNet18_Weights.IMAGENET1K_V1")
    assert (mean, std) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert all(type(v) is float for v in (*mean, *std))
    for name in ("Nope", "resnet18.IMAGENET1K_V1"):
        with pytest.raises(Exception) as raised:
            torchvision.models.get_weight(name)
        why = f"{type(raised.value).__name__}: {str(raised.value).splitlines()[0]}"
        with pytest.raises(ModelLoadError) as info:
            torchvision_normalization(name)
        assert (info.value.field, info.value.message) == (
            "transforms_of", f"{name!r}: not a torchvision weights name such as ResNet18_Weights.IMAGENET1K_V1 ({why})",
        )  # fmt: skip
        assert info.value.__cause__ is None and info.value.__suppress_context__

    class Transforms:
        mean = (1, 2)

    class Weights:
        def transforms(self) -> Transforms:
            return Transforms()

    monkeypatch.setattr(torchvision.models, "get_weight", lambda name: Weights())
    assert _error(lambda: torchvision_normalization("Any")) == ("transforms_of", "Any: its transforms name no mean/std")
    Transforms.std = (3, 4)
    assert torchvision_normalization("Any") == ([1.0, 2.0], [3.0, 4.0])
    del Transforms.mean
    assert _error(lambda: torchvision_normalization("Any"))[1] == "Any: its transforms name no mean/std"


def test_resolve_normalization_defaults_and_given_values() -> None:
    assert resolve_normalization(None, None, 3, default="identity") == ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert resolve_normalization(None, None, 1, default="identity") == ([0.0], [1.0])
    assert resolve_normalization(None, None, 3, default="imagenet") == (list(IMAGENET_MEAN), list(IMAGENET_STD))
    one = ([sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3])
    assert resolve_normalization(None, None, 1, default="imagenet") == one
    assert resolve_normalization(None, None, 2, default="imagenet") == (one[0] * 2, one[1] * 2)
    assert resolve_normalization([0.5], [0.25], 3, default="identity") == ([0.5] * 3, [0.25] * 3)
    mean, std = resolve_normalization((1, 2, 3), [4, 5, 6], 3, default="imagenet")
    assert (mean, std) == ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) and all(type(v) is float for v in (*mean, *std))
    assert resolve_normalization([0.1, 0.2], [1e-9], 2, default="identity") == ([0.1, 0.2], [1e-9, 1e-9])


def test_resolve_normalization_refusals_name_mean_or_std() -> None:
    why = "(the two describe one normalization)"
    for mean, std, field, absent in (([0.5], None, "mean", "std"), (None, [0.5], "std", "mean")):
        given_alone = _error(lambda m=mean, s=std: resolve_normalization(m, s, 3, default="identity"))
        assert given_alone == (field, f"given without {absent} {why}")
    assert _error(lambda: resolve_normalization([0.1, 0.2], [1.0], 3, default="identity")) == (
        "mean", "2 values for 3-channel images (give 1 or 3)",
    )  # fmt: skip
    assert _error(lambda: resolve_normalization([0.1], [1.0, 1.0], 1, default="identity")) == (
        "std", "2 values for 1-channel images (give 1 or 1)",
    )  # fmt: skip
    assert _error(lambda: resolve_normalization([0.1], [0.5, 0, 0.5], 3, default="identity")) == (
        "std", "must be positive, got [0.5, 0.0, 0.5]",
    )  # fmt: skip
    assert _error(lambda: resolve_normalization([0.1], [-1], 2, default="identity")) == (
        "std", "must be positive, got [-1.0, -1.0]",
    )  # fmt: skip


class _Recorder(nn.Module):
    """Records the mode, grad mode and input shape of each call; returns ``output(x)``."""

    def __init__(self, output: Callable[[torch.Tensor], object]) -> None:
        super().__init__()
        self.drop, self.output, self.calls = nn.Dropout(0.5), output, []

    def forward(self, x: torch.Tensor) -> object:
        self.calls.append((self.training, self.drop.training, torch.is_grad_enabled(), tuple(x.shape)))
        return self.output(x)


def test_check_classifier_runs_one_image_in_eval_mode_without_gradients() -> None:
    model = _Recorder(lambda x: torch.zeros(x.shape[0], 3))
    model.drop.eval()
    check_classifier(model, torch.rand(3, 8, 6), 3, field="factory", source="net.py:build")
    assert model.calls == [(False, False, False, (1, 3, 8, 6))]
    assert model.training and not model.drop.training and torch.is_grad_enabled()  # each mode restored


@pytest.mark.parametrize(
    ("output", "got"),
    [
        (lambda x: torch.zeros(1, 2), "(1, 2)"),
        (lambda x: torch.zeros(3), "(3,)"),
        (lambda x: torch.zeros(1, 3, 1), "(1, 3, 1)"),
        (lambda x: (torch.zeros(1, 3),), "tuple"),
    ],
)
def test_check_classifier_refuses_an_output_that_is_not_one_row_of_logits(
    output: Callable[[torch.Tensor], object], got: str
) -> None:
    model, image = _Recorder(output), torch.rand(3, 4, 4)
    assert _error(lambda: check_classifier(model, image, 3, field="arch", source="w.pth")) == (
        "arch",
        f"w.pth: the model's output is {got} for one image; the data has 3 classes, so (1, 3) logits are needed",
    )


def test_check_classifier_names_the_images_a_model_cannot_take() -> None:
    def fails(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(" mat1 and mat2 shapes cannot be multiplied\n(details)")

    model = _Recorder(fails)
    with pytest.raises(ModelLoadError) as info:
        check_classifier(model, torch.rand(1, 28, 20), 10, field="weights", source="w.pth")
    assert (info.value.field, info.value.message) == (
        "weights",
        "w.pth: the model cannot take the data's 1x28x20 images "
        "(RuntimeError: mat1 and mat2 shapes cannot be multiplied)",
    )
    assert isinstance(info.value.__cause__, RuntimeError) and model.training


def test_load_classifier_wraps_the_network_with_the_statistics_of_its_path(factory: Path, tmp_path: Path) -> None:
    built = load_classifier(factory=f"{factory}:build")
    assert isinstance(built, ImageClassifier) and not any(m.training for m in built.modules())
    assert built.normalize.mean.flatten().tolist() == [0.0] * 3 and built.normalize.std.flatten().tolist() == [1.0] * 3
    x = torch.rand(2, 3, 1, 2)
    assert torch.equal(built(x), built.net(x))
    gray = load_classifier(factory=f"{factory}:build", mean=[0.5], std=[0.25], in_channels=1)
    assert gray.normalize.mean.flatten().tolist() == [0.5] and gray.normalize.std.flatten().tolist() == [0.25]
    x = torch.rand(2, 1, 1, 2)
    torch.testing.assert_close(gray(x), gray.net((x - 0.5) / 0.25), rtol=0, atol=1e-6)
    torch.manual_seed(1)
    torch.save({f"fc.{k}": v for k, v in nn.Linear(2, 3).state_dict().items()}, tmp_path / "fc.pth")
    trained = load_classifier(factory=f"{factory}:build", weights=tmp_path / "fc.pth")
    assert torch.equal(trained.net.fc.weight, torch.load(tmp_path / "fc.pth", weights_only=True)["fc.weight"])
    enum = load_classifier(factory=f"{factory}:build", transforms_of="ResNet18_Weights.IMAGENET1K_V1")
    torch.testing.assert_close(enum.normalize.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    torch.save(_state(num_classes=3), tmp_path / "w.pth")
    tv = load_classifier(arch=ARCH, weights=str(tmp_path / "w.pth"))
    assert type(tv.net).__name__ == "SqueezeNet" and tv.net.num_classes == 3 and not tv.training
    torch.testing.assert_close(tv.normalize.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    torch.testing.assert_close(tv.normalize.std.flatten(), torch.tensor(IMAGENET_STD))
    tv_gray = load_classifier(arch=ARCH, weights=tmp_path / "w.pth", in_channels=1)
    torch.testing.assert_close(tv_gray.normalize.mean.flatten(), torch.tensor([sum(IMAGENET_MEAN) / 3]))


def test_load_classifier_refusals(factory: Path) -> None:
    assert _error(lambda: load_classifier()) == ("factory", "give exactly one of arch and factory")
    assert _error(lambda: load_classifier(arch=ARCH, factory=f"{factory}:build", weights="w.pth")) == (
        "arch", "give exactly one of arch and factory",
    )  # fmt: skip
    assert _error(lambda: load_classifier(arch=ARCH)) == (
        "weights", f"{ARCH} needs a weights file (visionlab never downloads weights)",
    )  # fmt: skip
    for given in ({"mean": [0.5]}, {"std": [0.5]}):
        assert _error(lambda g=given: load_classifier(factory=f"{factory}:build", transforms_of="X", **g)) == (
            "transforms_of", "not with mean/std (it gives them)",
        )  # fmt: skip
    assert _error(lambda: load_classifier(factory=f"{factory}:build", mean=[0.5], std=[0.5, 0.5])) == (
        "std", "2 values for 3-channel images (give 1 or 3)",
    )  # fmt: skip
