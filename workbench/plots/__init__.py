"""Figures with matplotlib's object-oriented API (a `Figure`, never pyplot's global state),
exported with provenance: the run ids, models and configs behind every figure.

Every figure function takes tidy pandas DataFrames (or an experiment's result), returns a `Figure`
and shares one house style (`workbench.plots.style`). `export_figure` writes PNG/SVG/PDF plus a
JSON sidecar and embeds the provenance in each file, secrets scrubbed; it draws a copy of the figure
one paper column (3.5 in) or two (7 in, the default) wide, PNG at 300 dpi (`workbench.plots.sizing`).

Plots sit between the experiments and the analysis layer: they never import the Sampler, a backend
or an experiment (an experiment's result type only under `if TYPE_CHECKING:`, for hints).
"""

from __future__ import annotations

from workbench.plots.distributions import answer_distribution_figure
from workbench.plots.export import FORMATS, export_figure, figure_formats_for
from workbench.plots.heatmaps import divergence_heatmap_figure
from workbench.plots.maps import embedding_map_figure
from workbench.plots.personas import persona_figure
from workbench.plots.segues import segue_figure
from workbench.plots.selfchat import selfchat_figure
from workbench.plots.steering import steering_sweep_figure
from workbench.plots.style import PALETTE, model_colours
from workbench.plots.sweeps import temperature_sweep_figure
from workbench.plots.tree import tree_figure

__all__ = [
    "FORMATS",
    "PALETTE",
    "answer_distribution_figure",
    "divergence_heatmap_figure",
    "embedding_map_figure",
    "export_figure",
    "figure_formats_for",
    "model_colours",
    "persona_figure",
    "segue_figure",
    "selfchat_figure",
    "steering_sweep_figure",
    "temperature_sweep_figure",
    "tree_figure",
]
