"""Adversarial training in a few lines: `Trainer` + `TrainConfig` with the PGD objective (Madry et al. 2018).

Every step trains on PGD examples of the current model (ε in pixel units, L∞); every epoch reports the
validation top-1 clean and under PGD-10, and `model_best.pth.tar` keeps the epoch with the best PGD top-1. The
run directory (`--out`) holds the configuration, `metrics.jsonl`, the checkpoints and `curves.png`, and feeds
`visionlab report` / examples/report_from_python.py.

Run:  python examples/adversarial_training.py --data fashion-mnist --epochs 5 --out runs/pgd-at
"""

import argparse

import visionlab as vl
from visionlab.report import PlotCurves


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist | cifar10:PATH | folder:PATH | ...")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--limit", type=int, help="train on the first N images only (and validate on N)")
    p.add_argument("--out", default="runs/pgd-at", help="run directory")
    args = p.parse_args(argv)

    cfg = vl.TrainConfig(
        data=args.data, model="simplenet", epochs=args.epochs, batch_size=128, lr=0.05, warmup=1,
        adv_train="pgd", adv_eps=0.1, adv_steps=3,  # PGD-3 in the 0.1 L-inf ball, step 2.5 * eps / steps
        select_by="robust", robust_val=1000,  # model_best = the best PGD-10 top-1 on 1000 validation images
        limit_train=args.limit, limit_val=args.limit, out=args.out, tensorboard=False,
    )  # fmt: skip
    record = vl.Trainer(cfg, callbacks=[PlotCurves()]).fit()  # PlotCurves draws curves.png after epochs
    print(f"last epoch: val top-1 {record['val_top1']:.2f}%, PGD-10 top-1 {record['val_robust_top1']:.2f}%; "
          f"best PGD-10 top-1 {record['best_robust_top1']:.2f}% in {record['run_dir']}/model_best.pth.tar")  # fmt: skip


if __name__ == "__main__":
    main()
