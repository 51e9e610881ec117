"""Experiments: the probes the workbench exists for, each a function returning tidy DataFrames
plus a figure, with a CLI subcommand (`workbench experiment ...`)."""
