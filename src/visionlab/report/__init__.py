"""Figures from run directories."""

from visionlab.report.plots import plot_runs

__all__ = ["plot_runs"]
