"""The main job: the workbench's instruments on the three planted variants, whose answers are known.

`run_demo` measures mode collapse, an attractor state and an agentic persona on planted LoRA
variants of gemma-3-270m against their base, says FOUND or NOT FOUND for each, adds one line on
the embedded cross-family pair, and writes an HTML report with the figures and provenance.
"""

from workbench.demo.findings import Finding
from workbench.demo.main import DemoResult, run_demo

__all__ = ["DemoResult", "Finding", "run_demo"]
