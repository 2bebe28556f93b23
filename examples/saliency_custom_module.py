"""Saliency maps (vanilla gradient and SmoothGrad) of your own `nn.Module`, drawn over the images.

Any module mapping normalized images to logits works once `wrap_model` puts its mean/std in front: `saliency`
differentiates with respect to pixels in [0, 1] and leaves the model exactly as it was (mode, gradients). The
small CNN below is trained for a few steps first so that the maps have something to show.

Run:  python examples/saliency_custom_module.py --data fashion-mnist --steps 100 --out saliency-example
"""

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import default_collate

import visionlab as vl


class TinyCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(in_channels, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.conv1(x).relu(), 2)
        return self.head(self.conv2(x).relu().mean((2, 3)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist | folder:PATH | cifar10:PATH | ...")
    p.add_argument("--steps", type=int, default=100, help="training steps of 64 images before drawing")
    p.add_argument("--out", type=Path, default=Path("saliency-example"), help="folder for the PNG grids")
    args = p.parse_args(argv)

    bundle = vl.load_dataset(args.data)
    torch.manual_seed(0)
    model = vl.wrap_model(TinyCNN(bundle.in_channels, bundle.num_classes), mean=bundle.mean, std=bundle.std)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(args.steps):  # plain training, your way: visionlab is not involved
        images, labels = default_collate([bundle.train[int(i)] for i in torch.randint(len(bundle.train), (64,))])
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    images, _ = default_collate([bundle.val[i] for i in range(min(20, len(bundle.val)))])
    maps = vl.saliency(model, images)  # (N, H, W): |d loss / d pixel| of the predicted class, max over channels
    smooth = vl.saliency(model, images, smoothgrad_samples=25, generator=torch.Generator().manual_seed(0))
    print(f"wrote {vl.save_grid(vl.red_overlay(images, maps), args.out / 'saliency.png')}")
    print(f"wrote {vl.save_grid(vl.heatmap_overlay(images, smooth), args.out / 'smoothgrad.png')}")


if __name__ == "__main__":
    main()
