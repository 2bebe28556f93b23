"""Figures and the HTML report of run directories (``visionlab compare``, ``visionlab report``).

``load_runs`` reads run directories, ``analyse`` evaluates a checkpoint for the report, ``build_report`` turns
both into one self-contained HTML page and ``write_page`` stores it; :mod:`visionlab.report.sections` says which
sections are computed and which are read from the files of other commands.
"""

from visionlab.report.analysis import ModelAnalysis, analyse, confusion_matrix, per_class_accuracy
from visionlab.report.callbacks import PlotCurves
from visionlab.report.html import write_page
from visionlab.report.plots import curves_figure, figure_png, plot_runs
from visionlab.report.run import Run, load_run, load_runs
from visionlab.report.sections import SECTIONS, build_report, conv_pairs

__all__ = [
    "SECTIONS",
    "ModelAnalysis",
    "PlotCurves",
    "Run",
    "analyse",
    "build_report",
    "confusion_matrix",
    "conv_pairs",
    "curves_figure",
    "figure_png",
    "load_run",
    "load_runs",
    "per_class_accuracy",
    "plot_runs",
    "write_page",
]
