"""The session-parallel training loop shared by the recurrent models.

One epoch walks a precomputed ``SessionParallelSchedule``: each step feeds one event per lane,
scores the lanes' targets plus the shared negative samples, applies the configured loss, and
updates dense weights with Adagrad-momentum and item tables on the touched rows only. Hidden
states are carried across steps (detached: one-step truncated back-propagation, as in the
reference) and zeroed for lanes that start a new session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from prnn import losses
from prnn.batching import NegativeSampler, SessionParallelSchedule, session_parallel_schedule
from prnn.data import EventLog
from prnn.errors import ConfigError, TrainingError
from prnn.models.gru4rec import SampledScores
from prnn.optim import AdagradMomentum
from prnn.step_plan import CHUNK_STEPS, StepBatch, plan_steps

if TYPE_CHECKING:
    from prnn.models.gru4rec import GRU4Rec

log = logging.getLogger(__name__)


@dataclass
class EpochReport:
    epoch: int
    loss: float
    seconds: float
    n_events: int
    events_per_second: float
    valid: dict[str, float] = field(default_factory=dict)

    def line(self, n_epochs: int) -> str:
        text = (
            f"epoch {self.epoch}/{n_epochs}: loss {self.loss:.6f}, {self.seconds:.2f} s, "
            f"{self.events_per_second:,.0f} events/s"
        )
        if self.valid:
            text += ", valid " + ", ".join(f"{k} {v:.4f}" for k, v in self.valid.items())
        return text


def session_start_order(events: EventLog) -> np.ndarray:
    """Sessions sorted by the time of their first event (GRU4Rec's training order); stable."""
    return np.argsort(events.timestamps[events.session_offsets[:-1]], kind="stable")


def make_loss(config) -> callable:
    """The loss of a GRU4Rec-style config as a function of (SampledScores, log_q)."""
    if config.loss == "cross-entropy":
        return lambda scores, log_q: losses.cross_entropy_over_distinct(
            scores.distinct, scores.output_columns, log_q
        )
    if config.loss == "bpr-max":
        return lambda scores, log_q: losses.bpr_max(
            scores.per_column(), config.bpreg, config.elu_param
        )
    if config.loss == "top1-max":
        return lambda scores, log_q: losses.top1_max(scores.per_column())
    if config.loss == "bpr":
        return lambda scores, log_q: losses.bpr(scores.per_column())
    if config.loss == "top1":
        return lambda scores, log_q: losses.top1(scores.per_column())
    raise ConfigError(f"unknown loss {config.loss!r}; choose from {', '.join(losses.LOSSES)}")


class CrossEntropyStepLoss:
    """Cross-entropy (with logQ) for the hand-written training step.

    What depends only on the sampled columns (each distinct row's weight in the partition
    function, the targets' corrections) comes ready-made with the planned step;
    ``value_and_gradient`` is then plain arithmetic on the scores, which ``torch.compile``
    takes whole and deterministically.
    """

    needs_row_weights = True

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def prepared(self, step: StepBatch) -> tuple[torch.Tensor, ...]:
        return step.rows.output_columns[: step.batch], step.log_row_weight, step.target_log_q

    def value_and_gradient(self, distinct_scores: torch.Tensor, *prepared: torch.Tensor):
        """(scale * loss, its gradient w.r.t. the distinct scores)."""
        return losses.cross_entropy_with_gradient(distinct_scores, *prepared, self.scale)


class AutogradStepLoss:
    """Any loss for the hand-written training step: its gradient w.r.t. the scores by autograd.

    The graph is the loss alone, small next to the network; logQ applies to cross-entropy only.
    """

    needs_row_weights = False

    def __init__(self, config, scale: float) -> None:
        self.loss_of = make_loss(config)
        self.scale = scale

    def prepared(self, step: StepBatch) -> tuple[torch.Tensor, ...]:
        return (step.rows.output_columns,)

    # runs eagerly inside a compiled step: autograd within torch.compile is not worth it here
    @torch.compiler.disable
    def value_and_gradient(self, distinct_scores: torch.Tensor, output_columns: torch.Tensor):
        with torch.enable_grad():
            leaf = distinct_scores.detach().requires_grad_()
            loss = self.loss_of(SampledScores(leaf, output_columns), None) * self.scale
            (gradient,) = torch.autograd.grad(loss, leaf)
        return loss.detach(), gradient


def make_step_loss(config) -> CrossEntropyStepLoss | AutogradStepLoss:
    """The loss of a GRU4Rec-style config for ``train_step``, divided by the batch size."""
    scale = 1.0 / config.batch_size
    if config.loss == "cross-entropy":
        return CrossEntropyStepLoss(scale)
    return AutogradStepLoss(config, scale)


@contextlib.contextmanager
def _compile_settings(compile: bool):
    """Settings for compiling the training step, around an epoch's steps only (not evaluation
    or callbacks: they are process-wide).

    - Sizes are never "duck-shaped". A planned step's tensors are views into its chunk's
      buffers (``prnn.step_plan``). By default dynamo gives one symbol to sizes and offsets that
      happen to be equal when it traces (an offset of 32 and a batch of 32), recompiles at the
      next step, where they differ, and after its limit of recompilations runs the step
      eagerly. Without duck shaping the step compiles once per fit.
    - Python floats (learning rate, momentum, the loss's scale) are constants of the graph. By
      default dynamo first traces them as tensors, then restarts the whole trace (seconds),
      and turns each into a tensor at every call.
    """
    if not compile:
        yield
        return
    from torch.fx.experimental import _config as fx_config

    with contextlib.ExitStack() as settings:
        # both settings are recent (duck shaping's switch since PyTorch 2.5): skipped where absent
        if hasattr(fx_config, "use_duck_shape"):
            settings.enter_context(fx_config.patch(use_duck_shape=False))
        if hasattr(torch._dynamo.config, "specialize_float"):
            settings.enter_context(torch._dynamo.config.patch(specialize_float=True))
        yield


def _lane_change_tensors(schedule: SessionParallelSchedule, device) -> dict[int, list[tuple]]:
    """The schedule's lane changes as (reset lanes or None, kept lanes or None) tensors, made
    once per training rather than once per step and epoch."""

    def tensor(lanes):
        return None if lanes is None or not len(lanes) else torch.as_tensor(lanes, device=device)

    return {
        step: [(tensor(change.reset), tensor(change.keep)) for change in changes]
        for step, changes in schedule.lane_changes.items()
    }


def _apply_lane_changes(hidden: list[torch.Tensor], changes) -> list[torch.Tensor]:
    for reset, keep in changes:
        if reset is not None:
            for h in hidden:
                h.index_fill_(0, reset, 0.0)
        if keep is not None:
            hidden = [h.index_select(0, keep) for h in hidden]
    return hidden


def _autograd_step(
    network, optimizer, loss_of, inputs, outputs, hidden, generator, log_q, batch_size
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One training step through ``network.sampled_scores`` and autograd; (loss, new hidden)."""
    scores, hidden, gathered = network.sampled_scores(
        inputs, outputs, [h.detach() for h in hidden], generator
    )
    loss = loss_of(scores, log_q) / batch_size
    loss.backward()
    optimizer.step_dense()
    for gathered_rows in gathered:
        if gathered_rows.leaf.grad is None:  # e.g. a sparse input with no non-zeros
            continue
        optimizer.step_rows(
            gathered_rows.table, gathered_rows.rows, gathered_rows.leaf.grad, gathered_rows.touched
        )
    for parameter in network.parameters():
        parameter.grad = None
    return loss.detach(), [h.detach() for h in hidden]


def _trained_tensors(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors training changes, by name: parameters and item tables.

    Feature matrices are buffers too, but fixed (and possibly large or memory-mapped), so the
    early-stopping snapshot leaves them out.
    """
    tables = {id(t) for t in network.item_tables()}
    trained = dict(network.named_parameters())
    trained.update((n, b) for n, b in network.named_buffers() if id(b) in tables)
    return trained


def train_session_parallel(
    model: GRU4Rec,
    events: EventLog,
    item_index: np.ndarray,
    *,
    generator: torch.Generator,
    progress: bool = False,
    valid: EventLog | None = None,
    patience: int = 0,
    valid_metric: str = "recall@20",
    phase=None,
    n_epochs: int | None = None,
    epoch_callback=None,
    compile: bool = False,
) -> list[EpochReport]:
    """Train ``model.network`` for ``model.config.n_epochs`` epochs; returns per-epoch reports.

    With ``valid``, each epoch ends with the shared evaluation on it; with ``patience > 0``,
    training stops after that many epochs without improving ``valid_metric`` and the best
    epoch's weights are kept. ``phase(epoch, step)`` (0-based epoch and step in it), for networks
    of several subnets, says which are active and trainable; ``n_epochs`` overrides the
    config's epoch count (residual training runs each subnet's epochs in turn);
    ``epoch_callback(report, network, optimizer)`` runs after each epoch; ``compile`` runs the
    step's arithmetic through ``torch.compile`` (networks with a hand-written step only).
    """
    from prnn.evaluation import evaluate

    config = model.config
    network = model.network
    if valid is not None:
        known = [
            f"{m}@{k}" for m in ("recall", "mrr", "coverage", "popularity") for k in (5, 10, 20)
        ]
        if valid_metric not in known:
            raise ConfigError(
                f"valid_metric must be one of {', '.join(known)}; got {valid_metric!r}"
            )
    device = model.device
    min_lanes = 2 if config.n_sample == 0 else 1
    schedule: SessionParallelSchedule = session_parallel_schedule(
        events.session_offsets, session_start_order(events), config.batch_size, min_lanes
    )
    if schedule.n_targets == 0:
        raise TrainingError(f"{events.source}: no session has two events; nothing to train on")
    if schedule.n_unused_targets:
        log.info(
            "%d targets at the end of each epoch are not trained on: fewer than %d lanes remain",
            schedule.n_unused_targets,
            min_lanes,
        )
    item_index_t = torch.from_numpy(item_index.astype(np.int64))
    positions = torch.from_numpy(schedule.input_positions)
    step_inputs = item_index_t[positions].to(device)
    step_targets = item_index_t[positions + 1].to(device)
    step_offsets = schedule.step_offsets.tolist()

    counts = model.fitted_vocabulary.counts
    sampler = (
        NegativeSampler(
            counts,
            config.n_sample,
            config.sample_alpha,
            config.sample_store_size,
            generator,
            device,
            max_rows=schedule.n_steps,
        )
        if config.n_sample > 0
        else None
    )
    log_q = None
    if config.loss == "cross-entropy" and config.logq > 0:
        # logQ correction: in-batch targets are "sampled" by popularity, extra negatives by
        # popularity ** sample_alpha (the reference's P0 and P0 ** sample_alpha)
        log_pop = torch.log(torch.from_numpy(counts.astype(np.float32))).to(device)
        log_q = (config.logq * log_pop, config.logq * config.sample_alpha * log_pop)
    loss_of = make_loss(config)
    # networks with a hand-written backward pass (GRU4Rec) skip autograd
    hand_written_backward = hasattr(network, "train_step")
    if compile and not hand_written_backward:
        raise ConfigError(
            f"compile=True needs a network with a hand-written training step (gru4rec); "
            f"{type(network).__name__} trains through autograd"
        )
    step_loss = make_step_loss(config) if hand_written_backward else None
    if compile and not isinstance(step_loss, CrossEntropyStepLoss):
        # the loss's gradient comes from autograd, eagerly, splitting the compiled step in two:
        # measured slower than not compiling (BPR-max on rsc15_100k: 70 s against 50 s)
        log.warning(
            "compile=True speeds up loss=cross-entropy only; training %s uncompiled", config.loss
        )
        compile = False
    optimizer = AdagradMomentum(
        list(network.parameters()), network.item_tables(), config.learning_rate, config.momentum
    )
    dropout_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    use_dropout = config.dropout_p_embed > 0 or config.dropout_p_hidden > 0
    step_sizes = np.diff(schedule.step_offsets).tolist()
    lane_changes = _lane_change_tensors(schedule, device)
    if hand_written_backward:
        embed_dropout, layer_dropout = network.dropout_specs()

    def plan_chunk(first: int) -> list[StepBatch]:
        """The planned steps ``first`` to ``first + CHUNK_STEPS`` (hand-written step only)."""
        last = min(first + CHUNK_STEPS, schedule.n_steps)
        lo, hi = step_offsets[first], step_offsets[last]
        return plan_steps(
            mode=network.mode,
            n_items=network.n_items,
            inputs=step_inputs[lo:hi],
            targets=step_targets[lo:hi],
            sizes=step_sizes[first:last],
            samples=None if sampler is None else sampler.draw_many(last - first),
            log_q=log_q,
            with_row_weights=step_loss.needs_row_weights,
            embed_dropout=embed_dropout,
            layer_dropout=layer_dropout,
            generator=dropout_generator if use_dropout else None,
        )

    reports: list[EpochReport] = []
    best_value, best_state, epochs_without_gain = -np.inf, None, 0
    n_epochs = n_epochs or config.n_epochs
    current_phase = None
    for epoch in range(1, n_epochs + 1):
        network.train()
        started = time.perf_counter()
        hidden = network.initial_hidden(config.batch_size)
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(
            range(schedule.n_steps),
            desc=f"epoch {epoch}/{n_epochs}",
            unit="batch",
            disable=not progress,
            mininterval=0.5,
        )
        with _compile_settings(compile):
            for step in bar:
                if phase is not None:
                    wanted = phase(epoch - 1, step)
                    if wanted != current_phase:
                        network.set_phase(wanted)
                        current_phase = wanted
                changes = lane_changes.get(step)
                if changes:
                    hidden = _apply_lane_changes(hidden, changes)
                lo, hi = step_offsets[step], step_offsets[step + 1]
                if hand_written_backward:
                    if step % CHUNK_STEPS == 0:
                        planned = plan_chunk(step)
                    loss, hidden = network.train_step(
                        planned[step % CHUNK_STEPS], hidden, step_loss, optimizer, compiled=compile
                    )
                else:
                    inputs, targets = step_inputs[lo:hi], step_targets[lo:hi]
                    outputs, column_log_q = targets, None
                    if sampler is not None:
                        samples = sampler.draw()
                        outputs = torch.cat([targets, samples])
                    if log_q is not None:
                        column_log_q = log_q[0][targets]
                        if sampler is not None:
                            column_log_q = torch.cat([column_log_q, log_q[1][samples]])
                    loss, hidden = _autograd_step(
                        network,
                        optimizer,
                        loss_of,
                        inputs,
                        outputs,
                        hidden,
                        dropout_generator if use_dropout else None,
                        column_log_q,
                        config.batch_size,
                    )
                loss_sum.add_(loss, alpha=hi - lo)
        bar.close()
        seconds = time.perf_counter() - started
        mean_loss = float(loss_sum) / schedule.n_targets
        if not np.isfinite(mean_loss):
            raise TrainingError(
                f"training diverged in epoch {epoch} (loss {mean_loss}); lower learning_rate"
            )
        report = EpochReport(
            epoch=epoch,
            loss=mean_loss,
            seconds=seconds,
            n_events=schedule.n_targets,
            events_per_second=schedule.n_targets / seconds,
        )
        if valid is not None:
            network.eval()
            if current_phase is not None:
                # score with the subnets in the output so far (residual adds them one by one)
                network.set_phase(dataclasses.replace(current_phase, trainable=frozenset()))
                current_phase = None
            result = evaluate(model, valid, cutoffs=(5, 10, 20))
            report.valid = {k: result.metrics[k] for k in ("recall@20", "mrr@20")}
            report.valid.setdefault(valid_metric, result.metrics[valid_metric])
            value = result.metrics[valid_metric]
            if value > best_value:
                best_value, epochs_without_gain = value, 0
                if patience > 0:
                    best_state = {
                        n: t.detach().clone() for n, t in _trained_tensors(network).items()
                    }
            else:
                epochs_without_gain += 1
        reports.append(report)
        log.info(report.line(n_epochs))
        if epoch_callback is not None:
            epoch_callback(report, network, optimizer)
        if patience > 0 and valid is not None and epochs_without_gain >= patience:
            log.info("early stopping: no %s gain for %d epoch(s)", valid_metric, patience)
            break
    if best_state is not None:
        with torch.no_grad():
            for name, tensor in _trained_tensors(network).items():
                tensor.copy_(best_state[name])
    network.eval()
    return reports
