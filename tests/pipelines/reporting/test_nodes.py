"""Reporting nodes: figures name classes as the dataset does."""

from __future__ import annotations

import pandas as pd

from longtail.pipelines.reporting.nodes import class_names


def test_class_names_follow_the_examples_table() -> None:
    examples = pd.DataFrame({"original_label": [2, 0, 1, 0], "class_name": ["star", "circle", "square", "circle"]})
    assert class_names(examples) == ["circle", "square", "star"]


def test_without_names_or_with_an_unnamed_class_labels_stay_numbers() -> None:
    assert class_names(pd.DataFrame({"original_label": [0, 1]})) is None
    assert class_names(pd.DataFrame({"original_label": [0, 2], "class_name": ["a", "c"]})) is None
