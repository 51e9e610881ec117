"""Interactive panels for JupyterLab (ipywidgets 8): compare distributions, explore branch trees,
sweep temperature.

Each panel is an ipywidgets `VBox`: display it (put it last in a cell) and press Run. The work
runs in a background thread with its own store connection; Stop ends a run after the current
chunk of samples and keeps what was sampled. Every panel has `.results` (its DataFrames, to
continue in code), `.figures` (matplotlib `Figure` objects), `.export()` (PNG/SVG/PDF with
provenance), `.run(wait=True)` and `.wait()` for driving it from code, and `.error` /
`.last_traceback` after a failure (the panel itself shows a one-line message).

All the analysis is the workbench's public functions (`compare_prompt`, `temperature_sweep`,
`BranchTree`, `semantic_clusters`, the figure functions in `workbench.plots`); the panels only
collect settings and show results.
"""

from workbench.widgets.base import Panel, PromptPicker, Stopped
from workbench.widgets.compare import ComparePanel, default_models
from workbench.widgets.sweep import SweepPanel, temperature_grid
from workbench.widgets.tokens import token_colour, tokens_html
from workbench.widgets.tree import TreeExplorer, tree_rows

__all__ = [
    "ComparePanel", "Panel", "PromptPicker", "Stopped", "SweepPanel", "TreeExplorer", "default_models",
    "temperature_grid", "token_colour", "tokens_html", "tree_rows",
]
