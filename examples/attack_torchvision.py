"""Attack a torchvision model with PGD: clean vs robust top-1 on the first images of a dataset.

visionlab attacks work on pixels in [0, 1] with ε in pixel units; `wrap_model` puts the model's own mean/std in
front of it, so any torchvision, timm or hand-written classifier takes part. Here a ResNet-18 with random weights
(load yours with `net.load_state_dict(torch.load(PATH))`): the numbers are chance level, the calls are the point.

Run:  python examples/attack_torchvision.py --data fashion-mnist --limit 64 --eps 0.03
"""

import argparse

import torch
import torchvision
from torch.utils.data import DataLoader, Subset

import visionlab as vl


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist | folder:PATH | cifar10:PATH | ...")
    p.add_argument("--limit", type=int, default=64, help="images attacked")
    p.add_argument("--eps", type=float, default=8 / 255, help="L-inf radius in pixel units")
    p.add_argument("--steps", type=int, default=10, help="PGD iterations")
    args = p.parse_args(argv)

    bundle = vl.load_dataset(args.data)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=bundle.num_classes)
    if bundle.in_channels == 1:  # a grayscale stem for Fashion-MNIST
        net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # The statistics the weights were trained with (ImageNet's for torchvision's pretrained weights).
    model = vl.wrap_model(net, mean=bundle.mean, std=bundle.std).eval()
    attack = vl.PGD(model, eps=args.eps, step=2.5 * args.eps / args.steps, steps=args.steps)
    loader = DataLoader(Subset(bundle.val, range(min(args.limit, len(bundle.val)))), batch_size=32)
    result = vl.robust_evaluate(model, loader, attack, "cpu")
    print(f"{attack}: clean top-1 {result['clean_top1']:.1f}%, robust top-1 {result['robust_top1']:.1f}%")


if __name__ == "__main__":
    main()
