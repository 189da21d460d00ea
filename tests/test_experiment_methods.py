"""The methods of ``prnn experiment paper``: the extra row of several feature sets at once and
choosing methods by name."""

from __future__ import annotations

import pytest

from prnn.errors import ConfigError
from prnn.experiment import paper_methods, select_methods


def test_extra_feature_sets_add_one_p_rnn_over_all_of_them():
    plain = paper_methods(100, "image")
    methods = paper_methods(100, "image", ("text",))
    assert len(methods) == len(plain) + 1
    every = methods[-1]
    assert every.label == "p-RNN (residual), ID + image + text"
    assert every.hidden == "100+100+100"
    assert every.settings["features"] == ("image", "text")
    # the paper's own rows keep reading the main feature set only
    readers = [m for m in methods[:-1] if m.model in ("content-knn", "feature-only", "concat")]
    readers += [m for m in methods[:-1] if m.model == "prnn"]
    assert readers and all(m.settings["features"] == ("image",) for m in readers)
    assert all("features" not in m.settings for m in plain)


def test_only_selects_methods_by_the_start_of_their_name():
    methods = paper_methods(100, "image", ("text",))
    chosen = select_methods(methods, "ID only 100, p-RNN (residual)")
    assert [(m.label, m.hidden) for m in chosen] == [
        ("ID only", "100"),
        ("p-RNN (residual)", "100+100"),
        ("p-RNN (residual), ID + image + text", "100+100+100"),
    ]
    assert select_methods(methods, None) == methods
    with pytest.raises(ConfigError, match="names none of the methods"):
        select_methods(methods, "nothing")
