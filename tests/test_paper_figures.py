"""Paper figures (#18): one- and two-column exports at 300 dpi, titles in words, round ticks, legends only
for what is drawn, n on every panel, visible zero bars, captions that match, trees whose edges never
cross a label. Small synthetic frames, no models (the helpers are tests/test_plots.py's)."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import PIL.Image
import pytest
from matplotlib.figure import Figure

from tests.test_plots import (
    MODELS,
    RUN_ID,
    answer_table,
    embedding_frames,
    heatmap_frame,
    outside_table,
    persona_result,
    selfchat_result,
    texts,
)
from workbench.errors import WorkbenchError
from workbench.plots import (
    answer_distribution_figure,
    divergence_heatmap_figure,
    embedding_map_figure,
    export_figure,
    model_colours,
    persona_figure,
    segue_figure,
    selfchat_figure,
    temperature_sweep_figure,
    tree_figure,
)

# -- paper figures (#18): sizes, words, round ticks, honest legends, n, zero bars, captions ----------------------


def linspace_sweep() -> pd.DataFrame:
    """A sweep at 0.5, 0.875, ..., 2.0 (the temperatures that gave ticks at 0.875 and 1.625), one exact and one
    sampled model, top share and its in-space partner."""
    from workbench.analysis.summaries import answer_estimates, estimate_rows

    labels = ["(other)", *[str(i) for i in range(1, 9)]]
    frames = []
    for model, method in zip(MODELS, ["exact", "sampled"], strict=True):
        for t, p_other in zip(np.linspace(0.5, 2.0, 5), (0.1, 0.2, 0.3, 0.4, 0.6), strict=True):
            inside = np.random.default_rng(int(t * 8)).dirichlet(np.ones(8) * t * 2)
            p = np.concatenate([[p_other], (1 - p_other) * inside])
            values, n = (p, math.nan) if method == "exact" else (np.round(p * 100), 100.0)
            estimates = answer_estimates(labels, values, method)
            frames.append(pd.DataFrame(estimate_rows(model, method, n, estimates)).assign(
                temperature=t, top_answer=estimates["top_answer"], p_other=estimates["p_other"].value, warning=""))
    return pd.concat(frames, ignore_index=True)


def zero_segue() -> SimpleNamespace:
    """A segue result where one model never recovers after one segue (a zero bar), n = 16 per bar."""
    rates = {(MODELS[0], "(no segue)"): 0.6, (MODELS[1], "(no segue)"): 0.9, (MODELS[0], "murderer"): 0.0,
             (MODELS[1], "murderer"): 0.4}
    summary = pd.DataFrame([{"model": m, "condition": c, "method": "keywords", "recovery_rate": r,
                             "ci_low": max(0.0, r - 0.2), "ci_high": min(1.0, r + 0.2) if r else 0.17, "n": 16}
                            for (m, c), r in rates.items()])
    return SimpleNamespace(summary=summary, home_label="office", prompt="attractors/office-segue",
                           family_note="different families")


def small_tree(edge: str = " 7"):
    """A three-level top-3 tree of one model, built without a sampler (the figure reads only the nodes)."""
    from workbench.experiments.tree.branch_tree import BranchTree
    from workbench.experiments.tree.nodes import TreeNode

    header = {"id": "t1", "model": MODELS[0], "prompt": {}, "prompt_ref": "mode-collapse/random-digit-sequence",
              "created_at": "2025-01-01", "root_input": {"mode": "text", "text": "Some random digits:"}}
    nodes = [TreeNode(0, None, 0, MODELS[0], "root", "", [], 0.0, 0.0)]
    frontier = [0]
    for depth in (1, 2, 3):
        grown = []
        for parent in frontier:
            for rank, (text, p) in enumerate([(edge, 0.45), (" 3", 0.25), (" 1", 0.12)][: 3 if depth < 3 else 2]):
                nodes.append(TreeNode(len(nodes), parent, depth, MODELS[0], "topk", text, [], math.log(p), 0.0,
                                      rank=rank, params={"k": 3}))
                grown.append(len(nodes) - 1)
        frontier = grown
    return BranchTree(None, header, nodes)


def paper_figures() -> dict[str, Figure]:
    """Every kind of figure, built from small frames."""
    points, clusters = embedding_frames()
    grid = persona_result()
    grid.traits = pd.concat([grid.traits.assign(framing="transcript"), grid.traits.assign(framing="chat")])
    grid.traits = grid.traits.assign(n_items=12, p_answered=0.8, p_answered_low=False)
    grid.items = pd.DataFrame({"model": MODELS * 2, "method": ["exact", "sampled"] * 2,
                               "framing": ["transcript", "transcript", "chat", "chat"]})
    return {
        "answers": answer_distribution_figure(outside_table(0.6), title="Answer distributions"),
        "sweep": temperature_sweep_figure(linspace_sweep(), "top1_mass",
                                          title="top1_mass against temperature: mode-collapse/random-digit-sequence"),
        "sweep-alone": temperature_sweep_figure(linspace_sweep(), "entropy_bits", in_space=False),
        "embedding": embedding_map_figure(points, clusters.assign(size=10), title="map"),
        "heatmap": divergence_heatmap_figure(heatmap_frame().assign(n=50), title="divergence"),
        "segue": segue_figure(zero_segue()),
        "personas": persona_figure(SimpleNamespace(**{**vars(persona_result()),
                                                       "traits": persona_result().traits.assign(n_items=12)})),
        "persona-grid": persona_figure(grid),
        "selfchat": selfchat_figure(selfchat_result(MODELS[0])),
        "tree": tree_figure(small_tree()),
    }


@pytest.fixture(scope="module")
def papers() -> dict[str, Figure]:
    """paper_figures() once per module: the tests below only read them (export and resizing work on copies)."""
    return paper_figures()


def plot_axes(fig: Figure) -> list:
    """The axes that draw data (not a legend header, a warning box or a colour bar)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]


def axes_text(ax) -> str:
    """Everything an axes says in words: titles, axis labels, annotations, its legend."""
    parts = [ax.get_title(loc) for loc in ("left", "center", "right")] + [ax.get_xlabel(), ax.get_ylabel()]
    parts += [t.get_text() for t in ax.texts]
    if ax.get_legend():
        parts += [t.get_text() for t in ax.get_legend().get_texts()]
    return " ".join(" ".join(parts).split())


@pytest.mark.parametrize(("width", "pixels"), [("one-column", 1050), ("two-column", 2100)])
def test_export_draws_each_figure_exactly_one_or_two_columns_wide_at_300_dpi(width, pixels, tmp_path, papers):
    from workbench.plots.sizing import WIDTHS

    for kind, fig in papers.items():
        before = tuple(fig.get_size_inches())
        png, sidecar = export_figure(fig, tmp_path / kind, {"run_id": RUN_ID}, formats=("png",), width=width)
        image = PIL.Image.open(png)
        assert image.size[0] == pixels, (kind, image.size)
        assert image.info["dpi"][0] == pytest.approx(300, abs=0.5)
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))["figure_size"]
        assert recorded["width"] == width and recorded["png_dpi"] == 300
        assert recorded["inches"][0] == WIDTHS[width] and 1.0 < recorded["inches"][1] <= 9.01  # a page's text block
        assert tuple(fig.get_size_inches()) == before  # the caller's figure (a notebook's, a panel's) is untouched
    default = export_figure(papers["segue"], tmp_path / "default", {}, formats=("png",))
    assert PIL.Image.open(default[0]).size[0] == 2100  # two columns unless asked otherwise
    as_built = export_figure(papers["segue"], tmp_path / "built", {}, formats=("png",), width=None)
    assert json.loads(as_built[1].read_text(encoding="utf-8"))["figure_size"]["width"] == "as built"
    with pytest.raises(WorkbenchError, match="unknown figure width 'three-column'; use one of one-column, two-column"):
        export_figure(papers["segue"], tmp_path / "bad", {}, width="three-column")
    assert not list(tmp_path.glob("bad*"))


@pytest.mark.parametrize("width", ["one-column", "two-column"])
def test_resized_figures_keep_every_text_inside_readable_and_laid_out(width, papers):
    import warnings

    from workbench.plots.sizing import sized_copy

    for kind, fig in papers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "constrained_layout not applied" would mean a collapsed layout
            copy = sized_copy(fig, width)
            copy.draw_without_rendering()
        frame = copy.bbox
        undrawn = set()  # tick labels matplotlib keeps for ticks outside the view: never drawn
        for ax in copy.axes:
            for axis in (ax.xaxis, ax.yaxis):
                if not (ax.axison and ax.get_visible()):  # a legend header or warning box draws no axis
                    undrawn |= {id(t) for t in axis.get_ticklabels(which="both")}
                    continue
                low, high = sorted(axis.get_view_interval())
                undrawn |= {id(label) for tick in axis.get_major_ticks() if not low - 1e-9 <= tick.get_loc() <= high
                            + 1e-9 for label in (tick.label1, tick.label2)}
        for text in copy.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize")):
            if not text.get_visible() or not text.get_text().strip() or id(text) in undrawn:
                continue
            box = text.get_window_extent()
            inside = (box.x0 >= frame.x0 - 2 and box.x1 <= frame.x1 + 2 and box.y0 >= frame.y0 - 2
                      and box.y1 <= frame.y1 + 2)
            assert inside, (kind, width, text.get_text()[:40], box, frame)
            assert text.get_fontsize() >= 6.0, (kind, width, text.get_text()[:40], text.get_fontsize())
        for ax in plot_axes(copy):
            box = ax.get_position()
            assert box.width * copy.get_figwidth() > 1.2 and box.height * copy.get_figheight() > 0.9, (kind, width)


def test_titles_say_metrics_and_prompts_in_words_and_never_break_an_id(papers):
    from workbench.plots.sizing import sized_copy
    from workbench.plots.style import METRIC_LABELS

    fig = papers["sweep"]
    for version in (fig, sized_copy(fig, "one-column"), sized_copy(fig, "two-column")):
        title = version.get_suptitle()
        assert not any(metric in title for metric in METRIC_LABELS), title
        assert " ".join(title.split()).startswith("Share of the top answer against temperature:")
        # Lines break at spaces only: the prompt id stays whole on one line.
        assert any("mode-collapse/random-digit-sequence" in line for line in title.split("\n")), title
    tree = tree_figure(small_tree())
    assert tree.get_suptitle() == "Branch tree: random digit sequence (mode collapse)"
    assert "mode-collapse/random-digit-sequence" in tree.get_supxlabel()  # the id stays findable, in the note
    assert tree_figure(small_tree(), title="Digits").get_suptitle() == "Digits"
    from workbench.plots.style import prompt_words

    assert prompt_words("mode-collapse/story-first-line?theme=a lighthouse") == \
        "story first line (mode collapse; theme = a lighthouse)"
    assert prompt_words("Tell me about your day.") == "Tell me about your day."  # not an id: as typed


@pytest.mark.parametrize("width", [None, "one-column", "two-column"])
def test_sweep_ticks_are_round_numbers(width, papers):
    from decimal import Decimal

    from workbench.plots.sizing import sized_copy

    fig = papers["sweep"]
    fig = sized_copy(fig, width) if width else fig
    fig.draw_without_rendering()
    for ax in plot_axes(fig):
        for axis, most in ((ax.xaxis, 1), (ax.yaxis, 2)):
            ticks = [t for t in axis.get_majorticklocs() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]] \
                if axis is ax.xaxis else list(axis.get_majorticklocs())
            labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
            assert labels and all(-Decimal(label.replace("−", "-")).normalize().as_tuple().exponent <= most
                                  for label in labels), labels
            steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
            assert len(steps) == 1, ticks
            step = Decimal(str(steps.pop())).normalize()
            assert step.as_tuple().digits[0] in (1, 2, 5) and len(step.as_tuple().digits) == 1, step


def test_legends_name_only_what_is_drawn(papers):
    for kind, fig in papers.items():
        drawn = set()
        for ax in fig.axes:
            drawn.update(ax.get_legend_handles_labels()[1])
        for ax in fig.axes:
            if ax.get_legend():
                for label in ax.get_legend().get_texts():
                    assert label.get_text().replace("\n", " ") in drawn, (kind, label.get_text())
    # Exact points only: no interval is drawn, so none is in the legend.
    exact = linspace_sweep().query("method == 'exact'")
    assert "interval" not in " ".join(texts(temperature_sweep_figure(exact, "entropy_bits")))
    # One temperature: the sampled interval is a whisker, and the legend says so with a drawn whisker behind it.
    single = temperature_sweep_figure(linspace_sweep().query("temperature == 0.5"), "entropy_bits", in_space=False)
    whiskers = [c for c in single.axes[0].containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(whiskers) == 1 and whiskers[0].get_label() in texts(single)
    # Nobody answers below the threshold: no key for the hollow markers that are not there.
    grid = papers["persona-grid"]
    assert not any(t.startswith("p_answered <") for t in texts(grid))


def test_every_plot_axes_says_its_n(papers):
    for kind, fig in papers.items():
        for ax in plot_axes(fig):
            assert re.search(r"\bn(?: in space)? = \d", axes_text(ax)), (kind, axes_text(ax)[:200])
    sweep = papers["sweep"]
    assert "n = 100 samples per point" in axes_text(sweep.axes[0])
    assert "n = 16 continuations per bar" in axes_text(papers["segue"].axes[0])
    # Exact numbers rest on no samples: the panel says so instead of an n.
    exact = temperature_sweep_figure(linspace_sweep().query("method == 'exact'"), "entropy_bits", in_space=False)
    assert axes_text(exact.axes[0]).startswith("exact probabilities, no samples")
    exact = answer_distribution_figure(answer_table().query("method == 'exact'"))
    assert axes_text(exact.axes[0]).startswith("exact probabilities, no samples")


@pytest.mark.parametrize("width", [None, "one-column"])
def test_zero_bars_are_drawn_and_labelled(width):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb

    from workbench.plots.sizing import sized_copy

    cases = {"segue": (segue_figure(zero_segue()), [(MODELS[0], "murderer")]),
             "answers": (answer_distribution_figure(answer_table().assign(
                 probability=lambda f: np.where((f["model"] == MODELS[1]) & (f["answer"] == "2"), 0.0,
                                                f["probability"]))), [(MODELS[1], "2")])}
    for kind, (fig, zeros) in cases.items():
        fig = sized_copy(fig, width) if width else fig
        FigureCanvasAgg(fig).draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].astype(float) / 255
        ax = plot_axes(fig)[0]
        names = [t.get_text() for t in ax.get_yticklabels()]
        bar = 0.8 / 2
        for model, category in zeros:
            m = MODELS.index(model)
            y = names.index(category) + (m - 0.5) * bar
            x_px, y_px = ax.transData.transform((0, y))
            row = int(round(fig.bbox.height - y_px))
            window = pixels[row - 2: row + 3, int(x_px) - 1: int(x_px) + 4].reshape(-1, 3)
            colour = np.array(to_rgb(model_colours(MODELS)[model]))
            assert (np.abs(window - colour).max(axis=1) < 0.12).sum() >= 4, (kind, width, model, category)
            zero_texts = [t for t in ax.texts if t.get_text() == "0" and abs(t.xy[1] - y) < 1e-9]
            assert len(zero_texts) == 1, (kind, model, category)


def test_embedding_caption_says_which_cluster_labels_are_drawn():
    points, clusters = embedding_frames()
    labelled = embedding_map_figure(points, clusters.assign(size=[5, 3]))
    assert len([t for t in labelled.axes[0].texts if t.get_text().startswith("#")]) == 2
    assert "labels: the 2 largest clusters, each at its medoid" in " ".join(labelled.axes[0].get_xlabel().split())
    one = embedding_map_figure(points, clusters.assign(size=[5, 3]), max_labels=1)
    assert "labels: the largest cluster, each at its medoid; 1 smaller clusters unlabelled" in \
        " ".join(one.axes[0].get_xlabel().split())
    for caption, figure in (("no cluster labels (no cluster has more than one member)",
                             embedding_map_figure(points, clusters.assign(size=1))),
                            ("no cluster labels", embedding_map_figure(points, None))):
        assert not [t for t in figure.axes[0].texts if t.get_text().startswith("#")]
        xlabel = " ".join(figure.axes[0].get_xlabel().split())
        assert xlabel.endswith(caption) and "medoid" not in xlabel


@pytest.mark.parametrize("width", [None, "one-column", "two-column"])
def test_tree_edges_run_under_label_boxes_and_never_cross_another_label(width):
    from workbench.plots.sizing import sized_copy

    fig = tree_figure(small_tree(edge=" seven, and then"))
    fig = sized_copy(fig, width) if width else fig
    fig.draw_without_rendering()
    ax = fig.axes[0]
    edges = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    labels = [t for t in ax.texts if t.get_bbox_patch() is not None]
    assert len(edges) == len(labels) == 30
    assert min(t.get_zorder() for t in labels) > max(line.get_zorder() for line in edges)
    assert all(t.get_bbox_patch().get_facecolor()[:4] == (1.0, 1.0, 1.0, 1.0) for t in labels)
    boxes = [t.get_bbox_patch().get_window_extent() for t in labels]
    for i, a in enumerate(boxes):  # no two labels overlap
        assert not any(a.overlaps(b) for b in boxes[i + 1:]), (width, labels[i].get_text())
    centres = [tuple(ax.transData.transform(t.xy)) for t in labels]
    for line in edges:
        (x0, y0), (x1, y1) = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        for box, centre in zip(boxes, centres, strict=True):
            if np.allclose(centre, (x1, y1)) or np.allclose(centre, (x0, y0)):
                continue  # its own end: the box covers it on purpose
            ts = np.linspace(0, 1, 200)
            inside = (box.x0 < x0 + ts * (x1 - x0)) & (x0 + ts * (x1 - x0) < box.x1) & \
                     (box.y0 < y0 + ts * (y1 - y0)) & (y0 + ts * (y1 - y0) < box.y1)
            assert not inside.any(), (width, "an edge crosses a label")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"edges made by {MODELS[0]}"]


def test_figure_commands_take_a_column_width_and_refuse_others():
    from workbench import cli
    from workbench.cli.figures import WIDTHS as CLI_WIDTHS
    from workbench.plots.sizing import WIDTHS

    assert CLI_WIDTHS == tuple(WIDTHS)
    parser = cli.build_parser()
    commands = (("distribution", ["p", "--models", "a"]), ("sweep", ["p", "--models", "a", "--temperatures", "1"]),
                ("embedding", ["p", "--models", "a"]), ("heatmap", ["--collection", "c", "--models", "a,b"]))
    for kind, rest in commands:
        assert parser.parse_args(["figure", kind, *rest]).width == "two-column"
        assert parser.parse_args(["figure", kind, *rest, "--width", "one-column"]).width == "one-column"
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["figure", kind, *rest, "--width", "3.5in"])
        assert exit_info.value.code == 2


def test_figures_made_elsewhere_are_exported_at_the_width_too_and_pyplot_keeps_one_copy(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    open_before = plt.get_fignums()
    png = export_figure(fig, tmp_path / "pyplot", {}, formats=("png",), width="one-column")[0]
    assert PIL.Image.open(png).size[0] == 1050 and plt.get_fignums() == open_before  # no second figure in pyplot
    plt.close(fig)
    bare = Figure()
    bare.add_subplot().bar(["a", "b"], [1, 2])
    assert PIL.Image.open(export_figure(bare, tmp_path / "bare", {}, formats=("png",))[0]).size[0] == 2100
