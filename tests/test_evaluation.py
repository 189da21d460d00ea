"""Ranks, tie policies and metrics against hand-computed cases; the evaluator's bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from prnn.data import EventLog, Vocabulary
from prnn.errors import ConfigError, DataError
from prnn.evaluation import (
    CandidateSet,
    evaluate,
    recall_at,
    reciprocal_rank_at,
    target_ranks,
)
from prnn.models import Pop
from prnn.models.base import HistoryModel, SessionHistories, select_candidates

from .conftest import make_log


@pytest.mark.parametrize(
    ("ties", "expected"), [("conservative", 3.0), ("optimistic", 2.0), ("median", 2.5)]
)
def test_target_rank_under_each_tie_policy(ties, expected):
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1]])
    # target 0.5: one item above (0.9), one other item tied (column 2)
    assert target_ranks(scores, torch.tensor([0]), ties).tolist() == [expected]


def test_target_rank_without_ties_is_the_same_for_every_policy():
    scores = torch.tensor([[0.1, 0.4, 0.3], [3.0, 2.0, 1.0]])
    for ties in ("conservative", "optimistic", "median"):
        assert target_ranks(scores, torch.tensor([2, 2]), ties).tolist() == [2.0, 3.0]


def test_unknown_tie_policy_is_rejected():
    with pytest.raises(ConfigError, match="ties must be one of"):
        target_ranks(torch.zeros(1, 2), torch.tensor([0]), "pessimistic")


def test_recall_and_mrr_by_hand():
    ranks = torch.tensor([1.0, 3.0, 25.0, float("inf")], dtype=torch.float64)
    assert recall_at(ranks, 20).mean().item() == pytest.approx(2 / 4)
    assert reciprocal_rank_at(ranks, 20).mean().item() == pytest.approx((1 + 1 / 3) / 4)
    assert reciprocal_rank_at(ranks, 2).mean().item() == pytest.approx(1 / 4)


@dataclass(frozen=True)
class _LookupConfig:
    pass


class LookupModel(HistoryModel[_LookupConfig]):
    """Scores are a fixed table row chosen by the last item: a model with known answers."""

    name = "lookup"
    config_class = _LookupConfig

    def __init__(self, vocabulary: Vocabulary, table: list[list[float]]):
        super().__init__(_LookupConfig())
        self.vocabulary = vocabulary
        self.table = torch.tensor(table, dtype=torch.float32)

    def _fit(self, events, item_index, *, progress):  # pragma: no cover - never fitted
        raise AssertionError

    def score(self, state: SessionHistories, lanes, candidates=None):
        last = [state.items[lane][-1] for lane in lanes]
        return select_candidates(self.table[last], candidates)

    def _tensors(self):
        return {}

    def _restore(self, tensors):
        pass


VOCABULARY = Vocabulary(item_ids=np.array(["a", "b", "c", "d"]), counts=np.array([4, 3, 2, 1]))
TABLE = [
    [0, 3, 2, 1],  # after a: b first
    [1, 1, 0, 1],  # after b: c last (rank 4)
    [5, 5, 5, 5],  # after c: everything tied
    [0, 0, 0, 0],
]


def test_evaluate_by_hand_under_each_tie_policy():
    model = LookupModel(VOCABULARY, TABLE)
    log = make_log({1: ["a", "b", "c", "d"]})
    # pairs: a->b rank 1; b->c rank 4; c->d tied with all four: rank 4 / 1 / 2.5
    expected_mrr5 = {
        "conservative": (1 + 1 / 4 + 1 / 4) / 3,
        "optimistic": (1 + 1 / 4 + 1) / 3,
        "median": (1 + 1 / 4 + 1 / 2.5) / 3,
    }
    for ties, mrr in expected_mrr5.items():
        result = evaluate(model, log, cutoffs=(1, 5), ties=ties)
        assert result.n_events == 3
        assert result.metrics["mrr@5"] == pytest.approx(mrr)
        assert result.metrics["recall@5"] == pytest.approx(1.0)
    result = evaluate(model, log, cutoffs=(1,), ties="conservative")
    assert result.metrics["recall@1"] == pytest.approx(1 / 3)
    assert result.ties == "conservative" and result.candidates == "all"


def test_unknown_items_are_skipped_and_dropped_from_history():
    model = LookupModel(VOCABULARY, TABLE)
    log = make_log({1: ["a", "x", "b", "c"], 2: ["y", "z"]})
    result = evaluate(model, log, cutoffs=(5,))
    # a->x (unknown target), x->b (unknown input) and y->z are skipped; b->c is ranked 4th
    assert (result.n_events, result.n_skipped) == (1, 3)
    assert result.metrics["mrr@5"] == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    ("sessions", "message"),
    [
        ({1: ["a"], 2: ["b"]}, "each of its 2 sessions has a single event"),
        (
            {1: ["x", "y"], 2: ["a", "z"]},
            "its 2 \\(event, next event\\) pair\\(s\\) all involve items",
        ),
    ],
)
def test_a_log_with_nothing_to_evaluate_is_an_error(sessions, message):
    model = LookupModel(VOCABULARY, TABLE)
    with pytest.raises(DataError, match=f"<memory>: no event to evaluate: {message}"):
        evaluate(model, make_log(sessions))


def test_top_n_candidates_count_outside_targets_as_misses():
    model = LookupModel(VOCABULARY, TABLE)
    log = make_log({1: ["a", "b", "c", "d"]})
    result = evaluate(model, log, cutoffs=(5,), candidates="top:2")
    # candidates are a and b (most popular); only a->b can hit
    assert result.n_candidates == 2
    assert result.n_targets_outside_candidates == 2
    assert result.metrics["recall@5"] == pytest.approx(1 / 3)
    assert result.to_dict()["targets_outside_candidates"] == "counted as misses"


def test_candidate_spec_is_validated():
    with pytest.raises(ConfigError, match="'all' or 'top:N'"):
        CandidateSet.parse("top:zero", VOCABULARY)


def test_coverage_and_popularity_of_pop_lists():
    train = make_log({1: ["a", "a", "a", "b", "b", "c"]})
    model = Pop().fit(train)
    test = make_log({2: ["a", "b", "c"], 3: ["c", "a"]})
    result = evaluate(model, test, cutoffs=(1, 2))
    # POP lists a (count 3), then b (2): coverage@1 = 1/3 items; popularity relative to a
    assert result.metrics["coverage@1"] == pytest.approx(1 / 3)
    assert result.metrics["coverage@2"] == pytest.approx(2 / 3)
    assert result.metrics["popularity@1"] == pytest.approx(1.0)
    assert result.metrics["popularity@2"] == pytest.approx((1 + 2 / 3) / 2)
    # targets b, c, a: ranks 2, 3, 1
    assert result.metrics["mrr@2"] == pytest.approx((1 / 2 + 0 + 1) / 3)


def _evaluate_one_session_at_a_time(model, events: EventLog, k: int) -> tuple[float, float, int]:
    """An independent, slow reference: each session alone, from an empty state."""
    vocabulary = model.fitted_vocabulary
    hits = reciprocal = count = 0.0
    for start, end in zip(events.session_offsets[:-1], events.session_offsets[1:]):
        items = vocabulary.index(events.item_ids[start:end])
        state = model.new_state(1)
        lane = np.zeros(1, dtype=np.int64)
        for position in range(len(items) - 1):
            if items[position] < 0:
                continue
            model.advance(state, lane, items[position : position + 1])
            if items[position + 1] < 0:
                continue
            rank = target_ranks(model.score(state, lane), torch.tensor([items[position + 1]]))[0]
            hits += float(rank <= k)
            reciprocal += float(1 / rank) if rank <= k else 0.0
            count += 1
    return hits / count, reciprocal / count, int(count)


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_session_parallel_lanes_match_one_session_at_a_time(batch_size):
    rng = np.random.default_rng(0)
    train = make_log({s: rng.integers(0, 12, size=rng.integers(2, 7)).tolist() for s in range(60)})
    test = make_log(
        {s: rng.integers(0, 14, size=rng.integers(2, 9)).tolist() for s in range(100, 130)}
    )
    from prnn.models import ItemKNN

    model = ItemKNN(regularization=1.0).fit(train)
    recall, mrr, count = _evaluate_one_session_at_a_time(model, test, k=5)
    result = evaluate(model, test, cutoffs=(5,), batch_size=batch_size)
    assert result.n_events == count
    assert result.metrics["recall@5"] == pytest.approx(recall)
    assert result.metrics["mrr@5"] == pytest.approx(mrr)
