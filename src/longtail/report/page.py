"""study_report.html: one self-contained page per study run.

Everything the page shows is inside the file: thumbnails and figures as PNG ``data:`` URIs,
the style sheet and the script inline, the table's rows as JSON. It opens from disk with no
server and no network (its Content-Security-Policy forbids any fetch), and MLflow's artefact
view shows it as it is.

Its size is bounded by the reporting parameters: at most ``max_examples`` gallery examples
(``per_class`` per class), each with its ``pairs_per_example`` strongest pairs, thumbnails of
at most ``thumbnail_px`` pixels, figures at 90 dpi; the table holds every reported pair and
memorized example (one short JSON row each). The default study's page is about 1 MB.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from longtail import figures
from longtail.estimate import Selection
from longtail.report import findings as headline
from longtail.report.thumbnails import figure_uri, thumbnail_uri

#: The table's columns, in the order of each JSON row: what an item is, its training example's
#: class, the training and test example, mem with its interval and q-value, infl with its interval
#: and q-value, and whether the selection reports it.
TABLE_COLUMNS = ("kind", "class", "train", "test", "mem", "mem_lo", "mem_hi", "mem_q", "infl", "infl_lo", "infl_hi", "q", "reported")
MAX_FEATURES_SHOWN = 8  # table data: feature values shown in place of an image


@dataclass(frozen=True)
class StudyTables:
    """What a run produced that the page shows (see the catalog for each table's columns)."""

    examples: pd.DataFrame
    train_images: np.ndarray
    test_images: np.ndarray
    memorization_scores: pd.DataFrame
    influence_pairs: pd.DataFrame
    reported_pairs: pd.DataFrame
    subset_model_runs: pd.DataFrame
    removal_curve: pd.DataFrame
    agreement: pd.DataFrame
    convergence: pd.DataFrame
    label_noise_detection: pd.DataFrame
    approximation_agreement: pd.DataFrame | None = None


@dataclass(frozen=True)
class PageSize:
    """What bounds the page: gallery examples per class and in all, pairs shown per example,
    and the thumbnails' longest side in pixels."""

    per_class: int = 12
    max_examples: int = 240
    pairs_per_example: int = 6
    thumbnail_px: int = 32


def class_names(examples: pd.DataFrame) -> list[str] | None:
    """Label → class name, from the ``examples`` table (None when it has no names, or a
    class index has no example to name it)."""
    if "class_name" not in examples:
        return None
    names = examples.drop_duplicates("original_label").set_index("original_label")["class_name"]
    n_classes = int(names.index.max()) + 1
    return None if len(names) != n_classes else [str(names[c]) for c in range(n_classes)]


def is_table(examples: pd.DataFrame) -> bool:
    """Tabular data (rows of a file, no images to show)."""
    return "row_id" in examples


def render(tables: StudyTables, parameters: dict[str, Any], run: dict[str, Any], size: PageSize) -> str:
    """The page, as one HTML string. ``parameters``: the study's parameter blocks as plain
    dicts (``dataset``, ``sampling``, ``training``, ``scoring``, ``diagnostics``); ``run``: what
    the run knows of itself (``longtail.hooks.RunContextHook``: when it started, its command,
    device, machine, software, MLflow ids, artefact paths)."""
    scoring = parameters["scoring"]
    selection = Selection(scoring["selection"], scoring["influence_threshold"], scoring["memorization_threshold"], scoring["fdr"])
    names = class_names(tables.examples)
    labels = _labels(tables.memorization_scores, names)
    gallery = _gallery(tables, selection, size)
    found = headline.find(
        tables.memorization_scores, selection, tables.reported_pairs, tables.influence_pairs.attrs.get("n_tests", 0),
        tables.subset_model_runs, tables.removal_curve, tables.agreement, tables.label_noise_detection,
    )
    pictures = _Pictures(tables, parameters["dataset"], size.thumbnail_px)
    sections = [
        _card(tables, parameters, run, found),
        _findings(found),
        _galleries(gallery, tables, labels, pictures, selection, parameters["scoring"]),
        _table_section(labels),
        _removal(tables.removal_curve, found),
        _diagnostics(tables, parameters, found),
        _approximations(tables.approximation_agreement),
        _reproduce(run),
    ]
    data = {"columns": TABLE_COLUMNS, "rows": _table_rows(tables, gallery, selection, labels), "pictures": pictures.uris}
    title = f"longtail · {run.get('study', 'study')}"
    return _fill(title, "\n".join(s for s in sections if s), data)


def _fill(title: str, body: str, data: dict[str, Any]) -> str:
    """The template with its markers replaced in one pass (so that no inserted text is ever
    read as a marker)."""
    package = resources.files("longtail.report")
    parts = {
        "TITLE": html.escape(title),
        "CSS": (package / "page.css").read_text(encoding="utf-8"),
        "BODY": body,
        "DATA": json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/"),
        "JS": (package / "page.js").read_text(encoding="utf-8"),
    }
    template = (package / "page.html").read_text(encoding="utf-8")
    return re.sub(r"@@(TITLE|CSS|BODY|DATA|JS)@@", lambda marker: parts[marker.group(1)], template)


# ----------------------------------------------------------------------------- helpers


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float, digits: int = 2) -> str:
    """A number for the page; NaN as an en dash, no ``-0.00``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}".replace("-0.00", "0.00")


def _q(value: float) -> str:
    return "–" if math.isnan(value) else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def _interval(low: float, high: float) -> str:
    return f"[{_num(low)}, {_num(high)}]"


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


def _html_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A small table (diagnostics, removal, approximations): floats to ``digits`` decimals."""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = [
            f'<td class="n">{_num(v, digits)}</td>' if isinstance(v, float | np.floating) else f"<td>{_e(v)}</td>"
            for v in values
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="small"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _labels(scores: pd.DataFrame, names: Sequence[str] | None) -> dict[int, str]:
    """Class index → the name the page shows."""
    classes = sorted(int(c) for c in pd.unique(scores["label"]))
    return {c: (names[c] if names is not None and 0 <= c < len(names) else str(c)) for c in classes}


# --------------------------------------------------------------------------- study card


def _network(training: dict[str, Any]) -> str:
    if training["model"] == "mlp":
        return "MLP " + "-".join(str(w) for w in training["hidden_sizes"]) + " (hidden widths)"
    return str(training["model"])


def _card(tables: StudyTables, parameters: dict[str, Any], run: dict[str, Any], found: headline.Findings) -> str:
    dataset, sampling, training = parameters["dataset"], parameters["sampling"], parameters["training"]
    train = tables.examples[tables.examples["split"] == "train"]
    n_train, n_test = len(train), int((tables.examples["split"] == "test").sum())
    shape = "×".join(str(d) for d in tables.train_images.shape[1:])
    noisy = int(train["noisy"].sum())
    noise = f"; {noisy:,} training labels flipped (dataset.label_noise {dataset['label_noise']:g})" if noisy else ""
    runs = tables.subset_model_runs
    subset = int(runs["param_subset_size"].iloc[0]) if len(runs) else round(sampling["subset_ratio"] * n_train)
    precision = str(runs["param_precision"].iloc[0]) if len(runs) else str(training["precision"])
    accuracy = (
        f"{found.accuracy.mean:.1%} ({found.accuracy.low:.1%} to {found.accuracy.high:.1%} over the models)"
        if found.accuracy else "–"
    )
    mlflow = run.get("mlflow") or {}
    rows = [
        ("Study", run.get("study", "")),
        ("Dataset", f"{dataset['name']}: {n_train:,} training and {n_test:,} test examples, "
                    f"{len(_labels(tables.memorization_scores, None))} classes, each {shape}{noise}"),
        ("Models", f"{sampling['n_models']:,} subset models, each trained on {subset:,} training examples "
                   f"({sampling['subset_ratio']:.0%}, {sampling['scheme']} subsets, seed {sampling['seed']})"),
        ("Network", _network(training)),
        ("Training", f"{training['epochs']} epochs, batch {training['batch_size']}, SGD lr {training['lr']:g} "
                     f"({training['schedule']} schedule), momentum {training['momentum']:g}, "
                     f"weight decay {training['weight_decay']:g}, label smoothing {training['label_smoothing']:g}, "
                     f"augmentation {'on' if training['augment'] else 'off'}, seed {training['seed']}"),
        ("Precision", precision),
        ("Device", run.get("device", "–")),
        ("Machine", run.get("machine", "–")),
        ("Wall time", _wall_time(run)),
        ("Mean test accuracy", accuracy),
        ("Experiment", f"shard store experiment {run.get('experiment', '–')}; MLflow experiment "
                       f"{mlflow.get('experiment_id', '–')}, run {mlflow.get('run_id', '–')}"),
        ("Software", run.get("software", "–")),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return _section("card", "Study", f'<dl class="card">{items}</dl>')


def _wall_time(run: dict[str, Any]) -> str:
    started = run.get("started")
    if started is None:
        return "–"
    return f"{headline.duration(time.time() - float(started))} (this run, from its start until this page was written)"


def _findings(found: headline.Findings) -> str:
    items = "".join(f"<li>{_e(s)}</li>" for s in headline.sentences(found))
    return _section("findings", "What it found", f'<ul class="findings">{items}</ul>')


# ------------------------------------------------------------------------------ galleries


@dataclass(frozen=True)
class _Gallery:
    """Per class, its most memorized training examples, and each one's strongest pairs."""

    examples: dict[int, pd.DataFrame]  # class → rows of memorization_scores
    pairs: dict[int, pd.DataFrame]  # training index → rows of influence_pairs


def _gallery(tables: StudyTables, selection: Selection, size: PageSize) -> _Gallery:
    scores = tables.memorization_scores
    finite = scores[np.isfinite(scores["mem"].to_numpy(dtype=float))]
    classes = sorted(int(c) for c in pd.unique(scores["label"]))
    per_class = max(1, min(size.per_class, size.max_examples // max(len(classes), 1)))
    if len(classes) > size.max_examples:  # more classes than examples allowed: those with most memorized first
        memorized = pd.Series(selection.memorized(finite["mem"], finite["mem_q"])).groupby(finite["label"].to_numpy()).sum()
        classes = sorted(memorized.reindex(classes, fill_value=0).sort_values(ascending=False, kind="mergesort").index[: size.max_examples])
    ranked = finite.sort_values(["mem", "index"], ascending=[False, True], kind="mergesort")
    examples = {c: ranked[ranked["label"] == c].head(per_class) for c in classes}
    shown = np.concatenate([e["index"].to_numpy() for e in examples.values()]) if examples else np.array([], int)
    pairs = tables.influence_pairs[tables.influence_pairs["train_index"].isin(shown)]
    pairs = pairs.sort_values(["infl", "test_index"], ascending=[False, True], kind="mergesort")
    by_train = {int(i): group.head(size.pairs_per_example) for i, group in pairs.groupby("train_index", sort=False)}
    return _Gallery(examples, by_train)


class _Pictures:
    """Thumbnails (or, for table data, feature values) of the examples the page shows, each
    made once: ``uris`` maps ``train-<index>`` / ``test-<index>`` to a data URI."""

    def __init__(self, tables: StudyTables, dataset: dict[str, Any], max_px: int) -> None:
        self._images = {"train": tables.train_images, "test": tables.test_images}
        self._max_px = max_px
        self._table = is_table(tables.examples)
        self._features = dataset.get("feature_columns")
        self._rows = {
            split: tables.examples[tables.examples["split"] == split].set_index("index") for split in ("train", "test")
        }
        self.uris: dict[str, str] = {}

    def html(self, split: str, index: int) -> str:
        """The picture of one example: an image element (its source set by the page's script
        from ``uris``), or the table row's values."""
        if self._table:
            return self._row_values(split, index)
        key = f"{split}-{index}"
        if key not in self.uris:
            self.uris[key] = thumbnail_uri(self._images[split][index], self._max_px)
        return f'<img class="thumb" data-picture="{key}" alt="{split} example {index}">'

    def _row_values(self, split: str, index: int) -> str:
        values = np.asarray(self._images[split][index]).reshape(-1)
        names = self._features or [f"feature {k + 1}" for k in range(len(values))]
        shown = "".join(
            f"<dt>{_e(name)}</dt><dd>{_num(float(v), 3)}</dd>" for name, v in zip(names[:MAX_FEATURES_SHOWN], values)
        )
        more = f'<p class="more">… {len(values) - MAX_FEATURES_SHOWN} more</p>' if len(values) > MAX_FEATURES_SHOWN else ""
        row = int(self._rows[split].loc[index, "row_id"])
        return f'<div class="row-values"><p>row {row}</p><dl>{shown}</dl>{more}</div>'


def _galleries(
    gallery: _Gallery, tables: StudyTables, labels: dict[int, str], pictures: _Pictures, selection: Selection,
    scoring: dict[str, Any],
) -> str:
    scores = tables.memorization_scores
    memorized = pd.Series(selection.memorized(scores["mem"], scores["mem_q"])).groupby(scores["label"].to_numpy()).sum()
    reported = set(zip(tables.reported_pairs["train_index"], tables.reported_pairs["test_index"]))
    train = tables.examples[tables.examples["split"] == "train"].set_index("index")
    classes = []
    for label, examples in gallery.examples.items():
        cards, panels = [], []
        for row in examples.itertuples():
            index = int(row.index)
            pairs = gallery.pairs.get(index, tables.influence_pairs.iloc[:0])
            member = bool(selection.memorized(np.array([row.mem]), np.array([row.mem_q]))[0])
            cards.append(_example_card(row, pictures.html("train", index), len(pairs), member, train.loc[index], labels))
            panels.append(_pairs_panel(index, row, pairs, reported, pictures, labels[label], scoring))
        count = int((scores["label"] == label).sum())
        heading = (
            f"{labels[label]} · {count:,} training examples · {int(memorized.get(label, 0)):,} memorized · "
            f"the {len(examples)} most memorized"
        )
        classes.append(
            f'<div class="class" data-class="{_e(labels[label])}"><h3>{_e(heading)}</h3>'
            f'<div class="gallery">{"".join(cards)}</div>{"".join(panels)}</div>'
        )
    note = (
        "<p>Each class's most memorized training examples, with mem, its 95% interval and its q-value. "
        "Click one to see the test examples it influences most, each with infl and its 95% interval "
        f"(the pairs that scoring kept: infl ≥ {scoring['influence_threshold']:g} or among a test example's "
        f"{scoring['top_k']} strongest; <b>reported</b> marks those the selection reports).</p>"
    )
    return _section("galleries", "Most memorized examples, by class", note, *classes)


def _example_card(row: Any, picture: str, n_pairs: int, memorized: bool, example: pd.Series, labels: dict[int, str]) -> str:
    flipped = (
        f'<span class="badge flipped">label flipped from {_e(labels.get(int(example["original_label"]), example["original_label"]))}</span>'
        if bool(example["noisy"]) else ""
    )
    badge = '<span class="badge">memorized</span>' if memorized else ""
    return (
        f'<button type="button" class="example" data-train="{int(row.index)}" data-pairs="{n_pairs}" aria-expanded="false">'
        f"{picture}<span class=\"id\">#{int(row.index)}</span>"
        f'<span>mem {_num(row.mem)}</span><span class="ci">{_interval(row.mem_lo, row.mem_hi)}</span><span>q {_q(row.mem_q)}</span>'
        f"{badge}{flipped}</button>"
    )


def _pairs_panel(
    index: int, row: Any, pairs: pd.DataFrame, reported: set, pictures: _Pictures, label: str, scoring: dict[str, Any]
) -> str:
    head = f"<h4>Training example #{index} ({_e(label)}, mem {_num(row.mem)}): the test examples it influences most</h4>"
    if pairs.empty:
        body = (
            f'<p class="none">None among the kept pairs: no test example\'s influence from it reaches '
            f"{scoring['influence_threshold']:g}, and it is not among any test example's {scoring['top_k']} strongest.</p>"
        )
    else:
        items = []
        for pair in pairs.itertuples():
            test = int(pair.test_index)
            mark = '<span class="badge">reported</span>' if (index, test) in reported else ""
            items.append(
                f'<div class="pair">{pictures.html("test", test)}<span class="id">test #{test}</span>'
                f'<span>infl {_num(pair.infl)}</span><span class="ci">{_interval(pair.infl_lo, pair.infl_hi)}</span>'
                f"<span>q {_q(pair.q_value)}</span>{mark}</div>"
            )
        body = f'<div class="gallery">{"".join(items)}</div>'
    return f'<div class="pairs" id="pairs-{index}" hidden>{head}{body}</div>'


# -------------------------------------------------------------------------------- table


def _table_rows(tables: StudyTables, gallery: _Gallery, selection: Selection, labels: dict[int, str]) -> list[list]:
    """Every memorized example and reported pair, and the examples and pairs the galleries
    show (``reported`` says which are the selection's)."""
    scores = tables.memorization_scores
    memorized = selection.memorized(scores["mem"], scores["mem_q"])
    shown = np.zeros(len(scores), dtype=bool)
    for examples in gallery.examples.values():
        shown[examples["index"].to_numpy()] = True
    rows = [
        ["example", labels[int(s.label)], int(s.index), None, *_finite(s.mem, s.mem_lo, s.mem_hi, s.mem_q),
         None, None, None, None, bool(m)]
        for s, m in zip(scores[memorized | shown].itertuples(), memorized[memorized | shown])
    ]
    pairs = pd.concat([tables.reported_pairs.assign(reported=True), *(p.assign(reported=False) for p in gallery.pairs.values())])
    pairs = pairs.drop_duplicates(["train_index", "test_index"], keep="first")  # reported first: its mark stays
    train = scores.set_index("index")
    rows += [
        ["pair", labels[int(train.at[p.train_index, "label"])], int(p.train_index), int(p.test_index),
         *_finite(p.mem, train.at[p.train_index, "mem_lo"], train.at[p.train_index, "mem_hi"], p.mem_q),
         *_finite(p.infl, p.infl_lo, p.infl_hi, p.q_value), bool(p.reported)]
        for p in pairs.itertuples()
    ]
    return rows


def _finite(*values: float) -> list[float | None]:
    """JSON has no NaN: missing numbers travel as null, rounded to keep the page small."""
    return [None if v is None or not math.isfinite(float(v)) else round(float(v), 4) for v in values]


def _table_section(labels: dict[int, str]) -> str:
    options = "".join(f'<option value="{_e(name)}">{_e(name)}</option>' for name in labels.values())
    controls = (
        '<div class="controls">'
        f'<label>class <select id="filter-class"><option value="">all</option>{options}</select></label>'
        '<label>rows <select id="filter-kind"><option value="">examples and pairs</option>'
        '<option value="example">examples</option><option value="pair">pairs</option></select></label>'
        '<label>mem ≥ <input id="filter-mem" type="number" step="0.05" min="-1" max="1"></label>'
        '<label>infl ≥ <input id="filter-infl" type="number" step="0.05" min="-1" max="1"></label>'
        '<label><input id="filter-reported" type="checkbox"> reported only</label>'
        '<span id="table-count"></span></div>'
    )
    head = "".join(
        f'<th data-column="{i}" aria-sort="none">{_e(name)}</th>'
        for i, name in enumerate(
            ("row", "class", "train", "test", "mem", "mem 95%", "mem q", "infl", "infl 95%", "infl q", "reported")
        )
    )
    note = (
        "<p>Every memorized training example and every reported pair of the selection, and the examples and "
        "pairs the galleries show. Click a column's name to sort by it. The class is the training example's "
        "(the label it was trained with).</p>"
    )
    table = f'<div id="items-box"><table id="items"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>'
    return _section("table", "All reported pairs and memorized examples", note, controls, table)


# ---------------------------------------------------------------------- removal, diagnostics


def _removal(curve: pd.DataFrame, found: headline.Findings) -> str:
    if curve.empty or found.removal is None:
        return _section("removal", "Removal curve", "<p>The removal experiment did not run.</p>")
    summary = figures.removal_summary(curve)
    table = summary.pivot_table(index=["threshold", "n_removed"], columns="strategy", values="mean").reset_index()
    table = table.sort_values("threshold", ascending=False)
    shown = pd.DataFrame({
        "mem ≥": table["threshold"].map("{:g}".format),
        "removed": table["n_removed"].astype(int),
        "test accuracy, memorized removed": table["memorization"],
        "test accuracy, random removed": table["random"],
    })
    return _section(
        "removal", "Removal curve",
        f'<img class="figure" src="{figure_uri(figures.removal_curve_figure(curve))}" alt="removal curve">',
        _html_table(shown, 4), f"<p>{_e(_removal_meaning(summary, found.removal))}</p>",
    )


def _removal_meaning(summary: pd.DataFrame, removal: headline.Removal) -> str:
    """Whether, at the headline threshold, removing the memorized examples costs more than
    removing random ones beyond both 95% intervals."""
    at = summary[summary["threshold"] == removal.threshold].set_index("strategy")
    memorized_high, random_low = float(at.at["memorization", "ci_high"]), float(at.at["random", "ci_low"])
    where = f"At mem ≥ {removal.threshold:g} ({removal.n_removed:,} examples removed)"
    if math.isnan(memorized_high) or math.isnan(random_low):
        return f"{where} each point is one model, so there are no intervals and the difference is untested (raise removal.repeats)."
    if memorized_high < random_low:
        return (
            f"{where} removing the memorized examples costs more test accuracy than removing random ones, beyond both "
            "95% intervals. What it means: the memorized examples carry what the test set's rare examples need."
        )
    return (
        f"{where} the two 95% intervals overlap. What it means: this study cannot tell removing the memorized "
        "examples from removing random ones (more removal.repeats narrow the intervals)."
    )


def _diagnostics(tables: StudyTables, parameters: dict[str, Any], found: headline.Findings) -> str:
    parts = ["<h3>Split-half agreement</h3>", f"<p>{_e(_agreement_meaning(found.halves))}</p>"]
    if not tables.agreement.empty:
        mode = parameters["scoring"]["selection"]
        columns = ["models_per_half", "spearman_mem", f"{mode}_jaccard_memorized", f"{mode}_memorized_replicated",
                   f"{mode}_jaccard_pairs", f"{mode}_pairs_replicated"]
        parts.append(_html_table(tables.agreement[[c for c in columns if c in tables.agreement]]))
    parts += ["<h3>Convergence</h3>", f"<p>{_e(_convergence_meaning(tables.convergence, parameters))}</p>"]
    if not tables.convergence.empty:
        parts.append(f'<img class="figure" src="{figure_uri(figures.convergence_figure(tables.convergence))}" alt="convergence">')
    parts += ["<h3>Label-noise detection</h3>", f"<p>{_e(_noise_meaning(found.noise))}</p>"]
    if not tables.label_noise_detection.empty:
        columns = ["score", "suspicious_when", "roc_auc", "average_precision", "precision_at_n_noisy", "n_noisy"]
        parts.append(_html_table(tables.label_noise_detection[columns]))
    return _section("diagnostics", "How far to trust the lists", *parts)


def _agreement_meaning(halves: headline.Halves | None) -> str:
    if halves is None:
        return "The diagnostics did not run."
    said = headline.halves_sentence(halves)
    if math.isnan(halves.pairs_replicated):
        return said + (
            " What it means: at this number of models no pair passes the selection in either half, so the "
            "agreement of the lists cannot be measured; read the full study's list as candidates."
        )
    if halves.pairs_replicated >= 0.9:
        verdict = "nearly every listed pair is found again by independent models: the list is reproducible"
    elif halves.pairs_replicated >= 0.6:
        verdict = "most listed pairs are found again, so read the rest of the list as candidates"
    else:
        verdict = "most listed pairs are not found again: they are chance exceedances of the cut-offs; train more models before trusting single pairs"
    return said + f" What it means: {verdict}."


def _convergence_meaning(convergence: pd.DataFrame, parameters: dict[str, Any]) -> str:
    if convergence.empty:
        return "The diagnostics did not run."
    last = convergence.iloc[-1]
    se, target = float(last["median_mem_se_memorized"]), float(last["target_se"])
    needed = float(last["models_for_target_se"])
    cutoff = parameters["scoring"]["memorization_threshold"]
    return (
        f"With {int(last['n_models']):,} models the median standard error of mem among the memorized examples is "
        f"{_num(se, 3)}; about {_num(needed, 0)} models would bring it to {target:g} (extrapolated as 1/√n). "
        f"What it means: a memorized example's mem is known to about ±{_num(1.96 * se, 2)}, so one within that "
        f"distance of the {cutoff:g} cut-off may fall on the other side of it in another study."
    )


def _noise_meaning(noise: headline.NoiseDetection | None) -> str:
    if noise is None:
        return (
            "No training label was flipped (dataset.label_noise = 0), so there is nothing to detect; set "
            "dataset.label_noise to plant errors and measure how well each score finds them."
        )
    return (
        f"{noise.n_noisy:,} training labels were flipped on purpose. {noise.best_score} ranks them best "
        f"(ROC AUC {noise.best_roc_auc:.3f}), mem reaches {noise.mem_roc_auc:.3f}. What it means: the scores "
        "do find real label errors, but mem also ranks atypical, correctly labelled examples high, so a memorized "
        "example is not necessarily mislabelled."
    )


def _approximations(agreement: pd.DataFrame | None) -> str:
    if agreement is None or agreement.empty:
        return ""
    first = [c for c in ("method", "cost_models") if c in agreement]
    table = agreement[first + [c for c in agreement.columns if c not in first]]
    note = (
        "Each cheap method's scores against the subset models' estimates of this study; cost_models counts its "
        "compute in subset-model trainings."
    )
    return _section("approximations", "Cheap approximations", f"<p>{_e(note)}</p>", _html_table(table))


# -------------------------------------------------------------------------------- reproduce


def _reproduce(run: dict[str, Any]) -> str:
    mlflow = run.get("mlflow") or {}
    lines = [f"# in the project folder{_at_commit(run)}", *run.get("commands", ["kedro run"])]
    if mlflow.get("link"):
        lines += ["# the study's runs in the MLflow UI", f"#   {mlflow['link']}"]
    lines += ["# the pipelines and their datasets", "make viz"]
    artefacts = {
        name: path.replace("<experiment>", str(run.get("experiment") or "<experiment>"))
        for name, path in (run.get("artefacts") or {}).items()
    }
    rows = "".join(f"<tr><td>{_e(name)}</td><td><code>{_e(path)}</code></td></tr>" for name, path in artefacts.items())
    table = f'<table class="small"><thead><tr><th>artefact</th><th>file</th></tr></thead><tbody>{rows}</tbody></table>'
    return _section(
        "reproduce", "Reproduce and find the artefacts", f"<pre>{_e(chr(10).join(lines))}</pre>",
        "<p>Files of this run, relative to the project folder (each catalog entry keeps one version per run):</p>",
        table,
    )


def _at_commit(run: dict[str, Any]) -> str:
    commit = run.get("commit")
    return f", at commit {commit}" if commit else ""
