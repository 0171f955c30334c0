"""The one hold-out rule (wvlp.data.holdout), which describe, train and evaluate all resolve classes with."""

import numpy as np
import pytest

from wvlp.data.holdout import names_by_index, resolve_holdout
from wvlp.data.sources import FashionMNISTSource

NAMES = names_by_index(["T-shirt/top", "Trouser", "Bag"])


def test_ids_digits_and_names_name_the_same_classes():
    assert resolve_holdout(NAMES, [2]) == resolve_holdout(NAMES, ["2"]) == resolve_holdout(NAMES, ["Bag"]) == {2}
    assert resolve_holdout(NAMES, [np.int64(0), "Trouser"]) == {0, 1}
    assert resolve_holdout(NAMES, None) == resolve_holdout(NAMES, []) == frozenset()


@pytest.mark.parametrize(
    "item, message",
    [
        ("Sandal", "data.holdout_classes: holdout class 'Sandal' is not a class name or label id"),
        (3, "data.holdout_classes: holdout class 3 is not a label id \\(labels: 0..2\\)"),
        ("-1", "holdout class '-1' is not a class name or label id"),
        (True, "True is not a class"),
        (1.5, "holdout class 1.5 is not a class name or label id"),
    ],
)
def test_an_unknown_class_is_named_with_its_setting(item, message):
    with pytest.raises(ValueError, match=message):
        resolve_holdout(NAMES, [item], setting="data.holdout_classes")


def test_a_source_also_accepts_its_stable_class_ids():
    source = FashionMNISTSource()
    bag = next(c for c in source.classes if c.name == "Bag")
    assert source.holdout_labels([bag.class_id]) == source.holdout_labels(["Bag"]) == source.holdout_labels([8]) == {8}
