"""The code paths that run only on CUDA, each once at a tiny size, before any long GPU run: a line ``ok NAME: …`` or
``FAIL NAME: …`` per check and one JSON line at the end. Meant as the first command on a lent GPU machine (about a
minute), so that a crash in a CUDA-only branch costs seconds, not a bench run. On the CPU (``--device cpu``) the
checks that need CUDA are skipped; what remains checks that the script itself runs.

Checks, on a synthetic MiniPlaces of ``--train`` images (:mod:`visionlab.data.synth`):

* ``env``: versions, the device, ``torch.cuda.utilization()`` (NVML: nvidia-ml-py).
* ``decode``: ``decode_jpeg(list, device=…)`` (nvJPEG) against the CPU decoder, pixel differences; and whether the
  deterministic fill of new tensors (the trainer's default ``deterministic``), queued behind busy work on the
  current stream, lands on nvJPEG's outputs when it is left on (``raw_all_255``: images left all 255) and not
  through :meth:`DeviceAugmentLoader.decode` (which turns it off).
* ``augment``: :func:`augment_batch` on the device against the CPU for the same parameters.
* ``loader-…``: each device-side payload (``image``, ``encoded``, ``index`` from a host, pinned or device cache)
  against the CPU path's batches for the same generator.
* ``pgd-fp16``: the share of zero input-gradient entries of the training attack's loss under fp16 and bf16
  autocast against float32 (underflow without loss scaling makes PGD's sign step 0 there; why ``--amp`` is bf16
  on GPUs that have it, :func:`visionlab.runtime.amp_dtype`).
* ``train-…``: one epoch of ``Trainer`` with amp and channels-last for each input option.

    python bench/cuda_smoke.py                  # CUDA
    python bench/cuda_smoke.py --device cpu     # checks the script on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from visionlab.data import load_dataset, synth_miniplaces
from visionlab.data.decode import read_image
from visionlab.data.device_augment import DeviceAugmentSource, augment_batch
from visionlab.engine import TrainConfig, Trainer, make_loader
from visionlab.engine.loaders import make_device_loader
from visionlab.models import build_model

RESULTS: dict[str, object] = {}


def check(name: str, fn: Callable[[], object]) -> None:
    try:
        RESULTS[name] = fn()
        print(f"ok {name}: {RESULTS[name]}", flush=True)
    except Exception as exc:  # report and go on: every check is worth its line
        RESULTS[name] = f"FAIL {exc.__class__.__name__}: {exc}"
        print(f"FAIL {name}: {exc.__class__.__name__}: {exc}", flush=True)
        traceback.print_exc()


def env(device: torch.device) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device)}
    import torchvision

    out["torchvision"] = torchvision.__version__
    if device.type == "cuda":
        out["name"] = torch.cuda.get_device_name(device)
        out["utilization"] = torch.cuda.utilization(device)
    return out


def decode(root: Path, device: torch.device) -> dict:
    from torchvision.io import ImageReadMode, decode_jpeg

    train = load_dataset(f"miniplaces:{root}", check_images=False).train
    source = DeviceAugmentSource(train, "encoded")
    payload, _, _, indices = source.collate([source[k] for k in range(min(256, len(source)))])
    loader = make_device_loader(train, 64, payload="encoded", workers=0, device=device)
    cpu = [read_image(train.entries[j].path) for j in indices.tolist()]
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        busy = torch.randn((4096, 4096) if device.type == "cuda" else (64, 64), device=device)
        for _ in range(20):  # work queued on the current stream ahead of the decode
            busy = busy @ busy / 64
        raw = decode_jpeg(payload, mode=ImageReadMode.RGB, device=device)  # the fill left on
        ours = loader.decode(payload, indices)
    finally:
        torch.use_deterministic_algorithms(before)
    diff = [(a.cpu().int() - b.int()).abs() for a, b in zip(ours, cpu, strict=True)]
    return {
        "images": len(cpu),
        "max_abs": max(int(d.max()) for d in diff),
        "mean_abs": round(sum(float(d.float().mean()) for d in diff) / len(diff), 4),
        "raw_all_255": sum(bool((r == 255).all()) for r in raw),
        "ours_all_255": sum(bool((o == 255).all()) for o in ours),
    }


def augment(device: torch.device) -> dict:
    from visionlab.data.device_augment import draw_params
    from visionlab.data.transforms import MiniPlacesAugment

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 128, 128), dtype=torch.uint8, generator=gen)
    torch.manual_seed(1)
    params = torch.stack([draw_params(MiniPlacesAugment(128), 128, 128) for _ in range(32)])
    cpu = augment_batch(images, params, 128)
    dev = augment_batch(images.to(device), params, 128)
    return {"max_abs": float((dev.cpu() - cpu).abs().max()), "device": str(dev.device)}


def loader_matches(root: Path, device: torch.device, payload: str, cache: str | None) -> dict:
    train = load_dataset(f"miniplaces:{root}", check_images=False, cache=cache is not None).train
    workers = 0 if payload == "index" else 2  # "index" draws in this process, as the CPU path with 0 workers
    cpu = make_loader(train, 32, train=True, workers=workers, device=torch.device("cpu"),
                      generator=torch.Generator().manual_seed(4))  # fmt: skip
    torch.manual_seed(5)
    expected = [batch for batch, _ in zip(cpu, range(3), strict=False)]  # before the cache leaves host memory
    if cache in ("pinned", "device"):
        train.place_cache("pinned" if cache == "pinned" else device)
    dev = make_device_loader(train, 32, payload=payload, workers=2, device=device,
                             generator=torch.Generator().manual_seed(4))  # fmt: skip
    worst = 0.0
    torch.manual_seed(5)
    for (x, y), (x2, y2) in zip(expected, dev, strict=False):
        assert torch.equal(y, y2.cpu()), "labels differ"
        worst = max(worst, float((x2.cpu() - x).abs().max()))
    return {"batches": len(expected), "max_abs": worst, "on": str(x2.device)}


def pgd_fp16(device: torch.device) -> dict:
    model = build_model("simplenet", num_classes=100, in_channels=3, image_size=128).to(device)
    gen = torch.Generator().manual_seed(0)
    n = 256 if device.type == "cuda" else 8  # the training batch on CUDA
    x = torch.rand(n, 3, 128, 128, generator=gen).to(device).requires_grad_(True)
    y = torch.randint(0, 100, (n,), generator=gen).to(device)
    zeros = {}
    for name, dtype in (("float32", None), ("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        (grad,) = torch.autograd.grad(loss, x)
        zeros[name] = round(float((grad == 0).float().mean()), 6)
    return {"zero_grad_share": zeros}


def train_one(root: Path, device: torch.device, out: Path, **options: object) -> dict:
    cfg = TrainConfig(data=f"miniplaces:{root}", model="simplenet", epochs=1, batch_size=64, warmup=0, workers=2,
                      device=str(device), amp=True, channels_last=True, out=str(out), progress=False,
                      tensorboard=False, check_images=False, **options)  # fmt: skip
    record = Trainer(cfg, callbacks=[]).fit()
    keys = ("train_loss", "val_top1", "seconds", "train_seconds", "data_wait_seconds")
    return {k: round(record[k], 3) for k in keys if k in record}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--train", type=int, default=512)
    p.add_argument("--val", type=int, default=128)
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="visionlab-cuda-smoke-") as tmp:
        root, _ = synth_miniplaces(Path(tmp) / "synth", train=args.train, val=args.val, classes=10, seed=0,
                                   workers=min(8, os.cpu_count() or 1))  # fmt: skip
        check("env", lambda: env(device))
        check("decode", lambda: decode(root, device))
        check("augment", lambda: augment(device))
        places = [("image", None), ("encoded", None), ("index", "host")] + ([("index", "pinned"), ("index", "device")]
                                                                              if cuda else [])  # fmt: skip
        for payload, cache in places:
            check(f"loader-{payload}-{cache or 'files'}", lambda p=payload, c=cache: loader_matches(root, device, p, c))
        check("pgd-fp16", lambda: pgd_fp16(device))
        if cuda:
            options = {"gpu-augment": {"gpu_augment": True}, "gpu-decode": {"gpu_decode": True},
                       "cache-pinned": {"cache_images": "pinned"}, "cache-device": {"cache_images": "device"},
                       "cpu-j2": {}, "pgd3-j2": {"adv_train": "pgd", "adv_steps": 3}}  # fmt: skip
            for name, kw in options.items():
                check(f"train-{name}", lambda n=name, k=kw: train_one(root, device, Path(tmp) / n, **k))
    print(json.dumps(RESULTS, default=str))


if __name__ == "__main__":
    main()
