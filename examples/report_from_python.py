"""The HTML report of one or more run directories, built from Python: what `visionlab report` does, step by step.

Each run's best checkpoint is rebuilt and evaluated on its validation split (top-1/top-5, per-class accuracy,
confusion matrix, top-5 cards and saliency of the first images); the rest (configuration, curves, and the
attack, saliency and robustness results of the CLI commands, when present) is read from the run directory.

Run:  python examples/report_from_python.py runs/pgd-at --limit 1000 --out report.html
"""

import argparse

from torch.utils.data import Subset

import visionlab as vl


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories (examples/adversarial_training.py --out DIR)")
    p.add_argument("--limit", type=int, default=1000, help="validation images evaluated per run")
    p.add_argument("--out", default="report.html", help="the page to write")
    args = p.parse_args(argv)

    runs = vl.load_runs(args.runs)  # every directory read and checked before any model is evaluated
    analyses = {}
    for run in runs:
        if run.checkpoint is None:  # no epoch finished: its model sections say so
            continue
        state = vl.load_checkpoint(run.checkpoint)
        model = vl.model_from_checkpoint(state)
        data = dict(data_root=run.config.get("data_root"), image_size=state["model_args"]["image_size"])
        bundle = vl.load_dataset(run.config["data"], **data)
        val = Subset(bundle.val, range(min(args.limit, len(bundle.val))))
        analyses[run.path] = vl.analyse(model, val, bundle.class_names, "cpu", checkpoint=run.checkpoint)
    print(f"wrote {vl.write_page(vl.build_report(runs, analyses), args.out)}")


if __name__ == "__main__":
    main()
