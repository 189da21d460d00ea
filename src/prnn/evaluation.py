"""Next-event evaluation, shared by every model: ranks with a stated tie policy, Recall/MRR@K.

The protocol (GRU4Rec, p-RNN papers): for every event of a test session but the last, the model
has seen the session up to and including that event and ranks the candidates for the next one.
Sessions run side by side in lanes (session-parallel, as in training), each lane's state reset
when it takes a new session, so the evaluator only ever calls the ``SessionRecommender``
interface and never knows which model it runs.

Defaults (defined once, in ``prnn.protocol``): conservative ties, all items as candidates,
cut-offs 1, 5, 10, 20.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prnn.data import EventLog, Vocabulary
from prnn.errors import ConfigError, DataError, PrnnError
from prnn.models.base import SessionRecommender
from prnn.progress import progress_bar
from prnn.protocol import (
    DEFAULT_CANDIDATES,
    DEFAULT_CUTOFFS,
    DEFAULT_TIES,
    OUTSIDE_CANDIDATES_POLICY,
    TIE_SHARE_ABOVE,
    TiePolicy,
    parse_candidates,
)
from prnn.threads import resolve_threads, using_threads

#: the most scores held at once while evaluating (32M floats, 128 MB): lanes are scored in
#: passes of SCORE_BUDGET // candidates
SCORE_BUDGET = 1 << 25


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, ties: TiePolicy = DEFAULT_TIES
) -> torch.Tensor:
    """1-based rank of each row's target among the row's scores.

    Args:
        scores: (B, C) float scores.
        targets: (B,) long column of the target in each row.
        ties: where the target goes among items with exactly its score: below all of them
            (``conservative``), above all (``optimistic``), or in the middle (``median``).

    Returns:
        (B,) float64 ranks (fractional under ``median``).
    """
    if ties not in TIE_SHARE_ABOVE:
        raise ConfigError(f"ties must be one of {', '.join(TIE_SHARE_ABOVE)}; got {ties!r}")
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    above = (scores > target_scores).sum(1)
    tied = (scores == target_scores).sum(1) - 1  # other items with the target's score
    return 1.0 + above.double() + TIE_SHARE_ABOVE[ties] * tied.double()


def recall_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) 1.0 where the target is in the top k, else 0.0."""
    return (ranks <= k).double()


def reciprocal_rank_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) 1 / rank where the target is in the top k, else 0.0."""
    return torch.where(ranks <= k, 1.0 / ranks, torch.zeros_like(ranks))


@dataclass(frozen=True)
class CandidateSet:
    """The items ranked for every event: all items, or the N most popular training items."""

    spec: str
    indices: np.ndarray | None
    """Candidate item indices, or None for all items."""
    column_of_item: np.ndarray
    """(I,) column of each item in the score matrix; -1 for items outside the candidates."""

    @classmethod
    def parse(cls, spec: str, vocabulary: Vocabulary) -> CandidateSet:
        n_items = len(vocabulary)
        top = parse_candidates(spec)
        if top is None:
            return cls("all", None, np.arange(n_items, dtype=np.int64))
        indices = vocabulary.most_popular(min(top, n_items))
        column_of_item = np.full(n_items, -1, dtype=np.int64)
        column_of_item[indices] = np.arange(len(indices))
        return cls(f"top:{top}", indices, column_of_item)

    def __len__(self) -> int:
        return len(self.column_of_item) if self.indices is None else len(self.indices)


@dataclass
class EvaluationResult:
    """Metrics averaged over all evaluated events, and what was counted how."""

    model: str
    cutoffs: tuple[int, ...]
    candidates: str
    n_candidates: int
    ties: str
    n_events: int
    n_skipped: int
    n_sessions: int
    n_targets_outside_candidates: int
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: ``recall@20``, ``mrr@20``, ... and the counts and settings."""
        return {
            **self.metrics,
            "n_events": self.n_events,
            "n_skipped": self.n_skipped,
            "n_sessions": self.n_sessions,
            "n_targets_outside_candidates": self.n_targets_outside_candidates,
            "targets_outside_candidates": OUTSIDE_CANDIDATES_POLICY,
            "candidates": self.candidates,
            "n_candidates": self.n_candidates,
            "ties": self.ties,
            "cutoffs": list(self.cutoffs),
            "model": self.model,
        }


@dataclass(frozen=True)
class _EvaluationSteps:
    """The test log as model inputs: one step per known input event that has a successor."""

    inputs: np.ndarray  # (T,) item index fed to the model
    targets: np.ndarray  # (T,) next item index, -1 = not evaluated (unknown target)
    session_starts: np.ndarray  # (S',) first step of each session that has steps
    session_ends: np.ndarray
    n_pairs: int  # (event, next event) pairs in the log: what could be evaluated


def _evaluation_steps(events: EventLog, vocabulary: Vocabulary) -> _EvaluationSteps:
    item_index = vocabulary.index(events.item_ids)
    is_last = np.zeros(events.n_events, dtype=bool)
    is_last[events.session_offsets[1:] - 1] = True
    next_index = np.r_[item_index[1:], -1]
    # Unknown inputs are dropped from the history; their pair and the pair before are skipped.
    is_step = (item_index >= 0) & ~is_last
    targets = np.where(is_step, next_index, -1)[is_step]
    steps_per_session = np.bincount(events.session_index()[is_step], minlength=events.n_sessions)
    steps_per_session = steps_per_session[steps_per_session > 0]
    ends = np.cumsum(steps_per_session)
    return _EvaluationSteps(
        inputs=item_index[is_step],
        targets=targets,
        session_starts=ends - steps_per_session,
        session_ends=ends,
        n_pairs=int(events.n_events - events.n_sessions),
    )


def _nothing_to_evaluate(events: EventLog, steps: _EvaluationSteps, model_name: str) -> str:
    """Why no event of ``events`` can be evaluated, for the error."""
    if events.n_events == 0:
        why = "the log has no events"
    elif steps.n_pairs == 0:
        why = (
            f"each of its {events.n_sessions} sessions has a single event; next-event "
            "evaluation needs sessions of two or more events"
        )
    else:
        why = (
            f"its {steps.n_pairs} (event, next event) pair(s) all involve items {model_name} "
            "was not trained on; do its item ids match the training log's?"
        )
    return f"{events.source}: no event to evaluate: {why}"


def evaluate(
    model: SessionRecommender,
    events: EventLog,
    *,
    cutoffs: tuple[int, ...] | list[int] = DEFAULT_CUTOFFS,
    candidates: str = DEFAULT_CANDIDATES,
    ties: TiePolicy = DEFAULT_TIES,
    batch_size: int = 256,
    progress: bool = False,
    threads: int | None = None,
    targets: Sequence | np.ndarray | None = None,
) -> EvaluationResult:
    """Next-event prediction over every event of each test session but the last.

    Args:
        model: a fitted recommender.
        events: the test log.
        cutoffs: the K of Recall@K, MRR@K, coverage@K and popularity@K.
        candidates: ``all`` or ``top:N`` (the N most popular training items). A target outside
            the candidates counts as a miss at every cut-off, and is counted.
        ties: tie policy, see ``target_ranks``.
        batch_size: sessions scored side by side.
        progress: show a progress bar on stderr (when it is a terminal).
        threads: intra-op threads; None = ``PRNN_THREADS``, the user's ``OMP_NUM_THREADS`` or
            the thread policy (``prnn.threads``: one per usable core for evaluation).
        targets: item ids; only the events whose next item is one of them are evaluated (e.g.
            items new to the model, for cold-start figures); the others count as skipped.

    Returns:
        Recall@K, MRR@K (reciprocal rank, 0 beyond K), coverage@K (share of candidates that
        appear in some top-K list) and popularity@K (mean training popularity of the listed
        items, relative to the most popular item), averaged over evaluated events. Events whose
        input or target item the model does not know are skipped and counted in ``n_skipped``.

    Raises:
        DataError: no event of ``events`` can be evaluated (all sessions have one event, or
            every pair involves an item the model does not know): metrics of 0 would mislead.
    """
    choice = resolve_threads(threads, "evaluate", source="threads=")
    with using_threads(choice):
        return _evaluate(
            model,
            events,
            cutoffs=cutoffs,
            candidates=candidates,
            ties=ties,
            batch_size=batch_size,
            progress=progress,
            targets=targets,
        )


def _evaluate(
    model: SessionRecommender,
    events: EventLog,
    *,
    cutoffs,
    candidates: str,
    ties: TiePolicy,
    batch_size: int,
    progress: bool,
    targets=None,
) -> EvaluationResult:
    """``evaluate``'s work, under its thread choice."""
    cutoffs = tuple(sorted({int(k) for k in cutoffs}))
    if not cutoffs or cutoffs[0] < 1:
        raise ConfigError(f"cutoffs must be positive integers; got {cutoffs!r}")
    if ties not in TIE_SHARE_ABOVE:
        raise ConfigError(f"ties must be one of {', '.join(TIE_SHARE_ABOVE)}; got {ties!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
    vocabulary = model.fitted_vocabulary
    candidate_set = CandidateSet.parse(candidates, vocabulary)
    steps = _evaluation_steps(events, vocabulary)
    if targets is not None:
        chosen = vocabulary.index(np.asarray(targets))
        steps = dataclasses.replace(
            steps,
            targets=np.where(np.isin(steps.targets, chosen[chosen >= 0]), steps.targets, -1),
        )
        if not (steps.targets >= 0).any():
            raise DataError(
                f"{events.source}: no event whose next item is one of the {len(targets)} "
                f"chosen targets can be evaluated by {model.name} (it knows "
                f"{int((chosen >= 0).sum())} of them)"
            )
    if not (steps.targets >= 0).any():
        raise DataError(_nothing_to_evaluate(events, steps, model.name))
    max_k = min(cutoffs[-1], len(candidate_set))
    relative_popularity = torch.from_numpy(vocabulary.counts / max(1, vocabulary.counts.max()))
    if candidate_set.indices is not None:
        relative_popularity = relative_popularity[torch.from_numpy(candidate_set.indices)]

    hits = dict.fromkeys(cutoffs, 0.0)
    reciprocal = dict.fromkeys(cutoffs, 0.0)
    popularity = dict.fromkeys(cutoffs, 0.0)
    listed = {k: torch.zeros(len(candidate_set), dtype=torch.bool) for k in cutoffs}
    n_evaluated = 0
    n_outside = 0

    n_sessions = len(steps.session_starts)
    n_lanes = min(batch_size, n_sessions)
    lane_pointer = steps.session_starts[:n_lanes].copy()
    lane_end = steps.session_ends[:n_lanes].copy()
    lane_active = np.ones(n_lanes, dtype=bool)
    next_session = n_lanes
    state = model.new_state(n_lanes)
    bar = progress_bar(
        desc=f"evaluate {model.name}", total=len(steps.inputs), unit="ev", enabled=progress
    )
    while lane_active.any():
        lanes = np.flatnonzero(lane_active)
        pointers = lane_pointer[lanes]
        model.advance(state, lanes, steps.inputs[pointers])
        targets = steps.targets[pointers]
        scored = targets >= 0
        # scored a few lanes at a time: at most SCORE_BUDGET scores in memory (a million
        # candidates x 256 lanes would be 1 GB)
        per_pass = max(1, SCORE_BUDGET // max(1, len(candidate_set)))
        scored_lanes, scored_targets = lanes[scored], targets[scored]
        for start in range(0, len(scored_lanes), per_pass):
            part = slice(start, start + per_pass)
            scores = model.score(state, scored_lanes[part], candidate_set.indices)
            if torch.isnan(scores).any():
                raise PrnnError(f"{model.name} produced NaN scores; the model is broken")
            columns = candidate_set.column_of_item[scored_targets[part]]
            inside = columns >= 0
            n_outside += int((~inside).sum())
            device = scores.device
            relative_popularity = relative_popularity.to(device)  # no-op after the first step
            ranks = torch.full((len(columns),), float("inf"), dtype=torch.float64, device=device)
            if inside.any():
                inside_t = torch.from_numpy(inside).to(device)
                ranks[inside_t] = target_ranks(
                    scores[inside_t], torch.from_numpy(columns[inside]).to(device), ties
                )
            top = torch.topk(scores, max_k, dim=1).indices
            for k in cutoffs:
                hits[k] += float(recall_at(ranks, k).sum())
                reciprocal[k] += float(reciprocal_rank_at(ranks, k).sum())
                top_k = top[:, :k]
                listed[k][top_k.reshape(-1).cpu()] = True
                popularity[k] += float(relative_popularity[top_k].mean(dim=1).sum())
            n_evaluated += len(columns)
        bar.update(len(lanes))
        lane_pointer[lanes] += 1
        finished = lanes[lane_pointer[lanes] >= lane_end[lanes]]
        if len(finished):
            model.reset(state, finished)
            for lane in finished.tolist():
                if next_session < n_sessions:
                    lane_pointer[lane] = steps.session_starts[next_session]
                    lane_end[lane] = steps.session_ends[next_session]
                    next_session += 1
                else:
                    lane_active[lane] = False
    bar.close()

    denominator = max(1, n_evaluated)
    metrics: dict[str, float] = {}
    for k in cutoffs:
        metrics[f"recall@{k}"] = hits[k] / denominator
        metrics[f"mrr@{k}"] = reciprocal[k] / denominator
    for k in cutoffs:
        metrics[f"coverage@{k}"] = float(listed[k].sum()) / len(candidate_set)
        metrics[f"popularity@{k}"] = popularity[k] / denominator
    return EvaluationResult(
        model=model.name,
        cutoffs=cutoffs,
        candidates=candidate_set.spec,
        n_candidates=len(candidate_set),
        ties=ties,
        n_events=n_evaluated,
        n_skipped=steps.n_pairs - n_evaluated,
        n_sessions=n_sessions,
        n_targets_outside_candidates=n_outside,
        metrics=metrics,
    )


def validation(
    events: EventLog, cutoffs: Sequence[int] = (5, 10, 20), **options: Any
) -> Callable[[SessionRecommender], dict[str, float]]:
    """A validation function for training: the metrics of ``evaluate`` on ``events``.

    Pass it as ``fit(..., valid=validation(valid_events), patience=2)``: the model calls it after
    each epoch (the training layer does not import the evaluation).
    """

    def metrics(model: SessionRecommender) -> dict[str, float]:
        return evaluate(model, events, cutoffs=cutoffs, **options).metrics

    return metrics
