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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from prnn.batching import NegativeSampler, SessionParallelSchedule, session_parallel_schedule
from prnn.data import EventLog
from prnn.errors import ConfigError, TrainingError
from prnn.network import BackpropWindow
from prnn.optim import make_optimizer
from prnn.progress import progress_bar
from prnn.training.checkpoint import Checkpointing, load_for_resume, save_checkpoint
from prnn.training.compile import CompileDecision, compile_settings
from prnn.training.distributed import DistributedTraining
from prnn.training.step_loss import make_step_loss
from prnn.training.step_plan import CHUNK_STEPS, plan_steps

log = logging.getLogger(__name__)

#: plan the next chunk of steps in a worker thread while the current one trains
PLAN_AHEAD = True


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
            # not in place: a past step back-propagated through (bptt > 1) keeps these states
            hidden = [h.index_fill(0, reset, 0.0) for h in hidden]
        if keep is not None:
            hidden = [h.index_select(0, keep) for h in hidden]
    return hidden


def _trained_tensors(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors training changes, by name: parameters and item tables.

    Feature matrices are buffers too, but fixed (and possibly large or memory-mapped), so the
    early-stopping snapshot leaves them out.
    """
    tables = {id(t) for t in network.item_tables()}
    trained = dict(network.named_parameters())
    trained.update((n, b) for n, b in network.named_buffers() if id(b) in tables)
    return trained


class ChunkPlanner:
    """Hands out the planned chunks in training order, planning the next one ahead.

    With ``ahead``, a worker thread plans chunk k + 1 while the steps of chunk k train: the
    planning (sorts, sampling, dropout masks) then runs on a core the training step, at one
    intra-op thread, leaves idle. Chunks are planned one after the other in the same order as
    without it, so the random draws, and the results, are the same. ``chunks_done``: chunks
    already trained before this planner (a resumed training).
    """

    def __init__(
        self, plan_chunk, n_steps: int, n_epochs: int, ahead: bool, chunks_done: int = 0
    ) -> None:
        self._plan_chunk = plan_chunk
        self._n_steps = n_steps
        self._chunks_left = n_epochs * -(-n_steps // CHUNK_STEPS) - chunks_done
        self._pool = ThreadPoolExecutor(max_workers=1) if ahead else None
        self._threads = torch.get_num_threads()
        self._next: tuple[int, Future] | None = None

    def _plan(self, first: int):
        torch.set_num_threads(self._threads)  # the worker's own setting, as the trainer's
        return self._plan_chunk(first)

    def chunk(self, first: int):
        """(the planned steps from ``first`` on, the random state before they were planned);
        starts planning the chunk after them."""
        self._chunks_left -= 1
        if self._next is not None and self._next[0] == first:
            planned = self._next[1].result()
        else:
            planned = self._plan_chunk(first)
        self._next = None
        if self._pool is not None and self._chunks_left > 0:
            following = first + CHUNK_STEPS if first + CHUNK_STEPS < self._n_steps else 0
            self._next = (following, self._pool.submit(self._plan, following))
        return planned

    def pending_random_state(self) -> dict | None:
        """The random state before the chunk being planned ahead (None: none is)."""
        return None if self._next is None else self._next[1].result()[1]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def mixed_precision_dtype(device: torch.device) -> torch.dtype:
    """The lower precision of mixed-precision training: bfloat16, where the device has it."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"mixed precision trains in bfloat16, which {torch.cuda.get_device_name(device)} "
            "does not support; train without it"
        )
    return torch.bfloat16


def _train_step(
    network,
    step,
    hidden,
    step_loss,
    optimizer,
    decision: CompileDecision,
    exchange=None,
    window: BackpropWindow | None = None,
):
    """One step, compiled if so decided; a compilation that fails falls back to eager mode.
    ``exchange``: the data-parallel gradient exchange (eager); ``window``: the past steps
    to back-propagate through (eager)."""
    if exchange is not None or window is not None:
        return network.train_step(
            step, hidden, step_loss, optimizer, exchange=exchange, window=window
        )
    if decision.compiled:
        try:
            return network.train_step(step, hidden, step_loss, optimizer, compiled=True)
        except Exception as error:  # noqa: BLE001 - whatever the compiler raised: go eager
            decision.failed(error)
    return network.train_step(step, hidden, step_loss, optimizer, compiled=False)


def train_session_parallel(
    network,
    config,
    events: EventLog,
    item_index: np.ndarray,
    item_counts: np.ndarray,
    *,
    generator: torch.Generator,
    device: torch.device,
    progress: bool = False,
    validate: Callable[[], dict[str, float]] | None = None,
    patience: int = 0,
    valid_metric: str = "recall@20",
    phase: Callable | None = None,
    n_phases: int = 1,
    n_epochs: int | None = None,
    early_stopping_from: int = 0,
    epoch_callback=None,
    compile: bool | None = None,
    checkpoint: Checkpointing | None = None,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    optimizer_out: dict | None = None,
    distributed: DistributedTraining | None = None,
    mixed_precision: bool = False,
) -> list[EpochReport]:
    """Train ``network`` for ``config.n_epochs`` epochs; returns per-epoch reports.

    The network provides the step interface: ``n_items``, ``id_mode``, ``dropout_specs()``,
    ``sparse_features()``, ``item_tables()``, ``initial_hidden(n)``, ``set_phase(phase)`` and
    ``train_step(step, hidden, loss, optimizer, compiled)``; ``config`` the GRU4Rec-style
    training settings (loss, batch size, sampling, optimiser, dropout, seed). ``item_counts``
    are the items' training counts (negative sampling and logQ).

    ``validate()`` (metrics of the network as it stands) runs after each epoch; with
    ``patience > 0``, training stops after that many epochs without improving ``valid_metric``
    and the best epoch's weights are kept. ``phase(epoch, step)`` (0-based epoch and step in
    it), for networks of several subnets, says which are active and trainable (``n_phases``:
    how many different ones there are); ``n_epochs`` overrides the config's epoch count;
    ``early_stopping_from``: epochs up to this one are validated but neither kept as the best
    nor counted against ``patience`` (residual training: only its last stage competes);
    ``epoch_callback(report, network, optimizer)`` runs after each epoch. ``compile``: run the
    step through ``torch.compile`` (True), eagerly (False), or decide by timing (None; see
    ``prnn.training.compile``). ``checkpoint``: save the training state at each epoch's end
    (and every so many minutes) and, with ``resume``, continue from the last one
    (``prnn.training.checkpoint``). ``optimizer_state``: buffers to start the optimiser from
    (continued training); ``optimizer_out``: a dict that receives the optimiser's buffers at
    the end. ``distributed``: this process's place in a data-parallel training
    (``prnn.training.distributed``): it trains on its shard of the sessions and averages each
    step's gradients with the other processes (eager step; no checkpoints). Runs with the
    caller's intra-op thread count (the models apply the thread policy around it).
    ``mixed_precision``: the output layer's products (scores and their gradients, the bulk of
    a step's arithmetic with thousands of sampled items) in bfloat16 during training; weights,
    optimiser state, the GRU and the loss stay float32 (``mixed_precision_dtype``).
    """
    if distributed is not None and checkpoint is not None:
        raise ConfigError(
            "distributed training writes no checkpoints: train without checkpoint (--resume, "
            "--checkpoint-minutes)"
        )
    full_softmax = getattr(config, "full_softmax", False)
    min_lanes = 2 if config.n_sample == 0 and not full_softmax else 1
    session_order = session_start_order(events)
    if distributed is not None:
        session_order = distributed.shard(session_order)
    schedule: SessionParallelSchedule = session_parallel_schedule(
        events.session_offsets, session_order, config.batch_size, min_lanes
    )
    if schedule.n_unused_targets:
        log.info(
            "%d targets at the end of each epoch are not trained on: fewer than %d lanes remain",
            schedule.n_unused_targets,
            min_lanes,
        )
    if distributed is not None:
        # every process runs the same number of steps: each exchange needs all of them
        n_steps = distributed.minimum(schedule.n_steps)
        before = schedule.n_targets
        schedule = schedule.first_steps(n_steps)
        (dropped,) = distributed.total([before - schedule.n_targets])
        if dropped:
            log.info(
                "%d targets at the ends of the longer shards are not trained on: every process "
                "runs the %d steps of the shortest",
                dropped,
                n_steps,
            )
        if compile:
            log.warning("distributed training runs the step eagerly: --compile is ignored")
        compile = False  # the exchange sits between the backward pass and the update
    bptt = getattr(config, "bptt", 1)
    window = BackpropWindow(bptt) if bptt > 1 else None
    if window is not None:
        if compile:
            log.warning("bptt > 1 runs the step eagerly: --compile is ignored")
        compile = False  # the window's past steps vary in number and shape
    if schedule.n_targets == 0:
        raise TrainingError(f"{events.source}: no session has two events; nothing to train on")
    item_index_t = torch.from_numpy(item_index.astype(np.int64))
    positions = torch.from_numpy(schedule.input_positions)
    step_inputs = item_index_t[positions].to(device)
    step_targets = item_index_t[positions + 1].to(device)
    step_offsets = schedule.step_offsets.tolist()

    sampler = (
        NegativeSampler(
            item_counts,
            config.n_sample,
            config.sample_alpha,
            config.sample_store_size,
            generator,
            device,
            max_rows=schedule.n_steps,
        )
        if config.n_sample > 0 and not full_softmax
        else None
    )
    log_q = None
    if config.loss == "cross-entropy" and config.logq > 0 and not full_softmax:
        # logQ correction: in-batch targets are "sampled" by popularity, extra negatives by
        # popularity ** sample_alpha (the reference's P0 and P0 ** sample_alpha)
        log_pop = torch.log(torch.from_numpy(item_counts.astype(np.float32))).to(device)
        log_q = (config.logq * log_pop, config.logq * config.sample_alpha * log_pop)
    step_loss = make_step_loss(config)
    optimizer = make_optimizer(config, list(network.parameters()), network.item_tables())
    if optimizer_state is not None:
        optimizer.load_state_tensors({k: v.to(device) for k, v in optimizer_state.items()})
    dropout_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    row_dropout = getattr(network, "output_id_dropout", 0.0)
    use_dropout = config.dropout_p_embed > 0 or config.dropout_p_hidden > 0 or row_dropout > 0
    step_sizes = np.diff(schedule.step_offsets).tolist()
    lane_changes = _lane_change_tensors(schedule, device)
    dropout_specs = network.dropout_specs()
    sparse_features = network.sparse_features()

    def random_state() -> dict:
        return {
            "generator": generator.get_state(),
            "dropout_generator": dropout_generator.get_state(),
            "sampler": None if sampler is None else sampler.state(),
        }

    def set_random_state(state: dict) -> None:
        generator.set_state(state["generator"])
        dropout_generator.set_state(state["dropout_generator"])
        if sampler is not None:
            sampler.set_state(state["sampler"])

    def plan_chunk(first: int):
        """(the planned steps ``first`` to ``first + CHUNK_STEPS``, the random state before)."""
        before = random_state()
        last = min(first + CHUNK_STEPS, schedule.n_steps)
        lo, hi = step_offsets[first], step_offsets[last]
        planned = plan_steps(
            id_mode=network.id_mode,
            n_items=network.n_items,
            inputs=step_inputs[lo:hi],
            targets=step_targets[lo:hi],
            sizes=step_sizes[first:last],
            samples=None if sampler is None else sampler.draw_many(last - first),
            log_q=log_q,
            with_row_weights=step_loss.needs_row_weights,
            dropout=dropout_specs,
            generator=dropout_generator if use_dropout else None,
            sparse_features=sparse_features,
            row_dropout=row_dropout,
            all_items=full_softmax,
        )
        return planned, before

    reports: list[EpochReport] = []
    best_value, best_state, epochs_without_gain = -np.inf, None, 0
    n_epochs = n_epochs or config.n_epochs
    chunks_per_epoch = -(-schedule.n_steps // CHUNK_STEPS)
    start_epoch, start_step, resumed = 1, 0, None
    if checkpoint is not None:
        resumed = load_for_resume(checkpoint)
    if resumed is not None:
        with torch.no_grad():
            for name, tensor in _trained_tensors(network).items():
                tensor.copy_(resumed["trained"][name])
        optimizer.load_state_tensors(resumed["optimizer"])
        set_random_state(resumed["random"])
        reports = [EpochReport(**report) for report in resumed["reports"]]
        best_value = resumed["best_value"]
        best_state = resumed["best_state"]
        epochs_without_gain = resumed["epochs_without_gain"]
        start_epoch, start_step = resumed["epoch"], resumed["step"]
    last_save = time.monotonic()

    def save(epoch: int, step: int, random: dict, hidden=None, loss_sum=None, seconds=0.0):
        nonlocal last_save
        save_checkpoint(
            checkpoint,
            {
                "epoch": epoch,
                "step": step,
                "trained": {n: t.detach() for n, t in _trained_tensors(network).items()},
                "optimizer": optimizer.state_tensors(),
                "random": random,
                "hidden": hidden,
                "loss_sum": loss_sum,
                "epoch_seconds": seconds,
                "reports": [dataclasses.asdict(report) for report in reports],
                "best_value": float(best_value),
                "best_state": best_state,
                "epochs_without_gain": epochs_without_gain,
            },
        )
        last_save = time.monotonic()

    planner = ChunkPlanner(
        plan_chunk,
        schedule.n_steps,
        n_epochs,
        ahead=PLAN_AHEAD,
        chunks_done=(start_epoch - 1) * chunks_per_epoch + start_step // CHUNK_STEPS,
    )
    decision = CompileDecision(
        compile,
        schedule.n_steps * n_epochs,
        device,
        n_graphs=n_phases,
        whole_step=step_loss.compiles_whole,
    )
    exchange = None if distributed is None else distributed.average_gradients
    current_phase = None
    if mixed_precision:
        network.output_dtype = mixed_precision_dtype(device)
    try:
        for epoch in range(start_epoch, n_epochs + 1):
            network.train()
            started = time.perf_counter()
            first_step, earlier_seconds = 0, 0.0
            # the first step's lanes: fewer than batch_size when there are fewer sessions
            hidden = network.initial_hidden(step_sizes[0])
            if window is not None:
                window.clear()  # (a mid-epoch resume, too, starts the window afresh)
            loss_sum = torch.zeros((), device=device)
            if resumed is not None and epoch == start_epoch and start_step > 0:
                # mid-epoch: the lanes and the loss as they were (lane changes at this step
                # already applied)
                first_step, earlier_seconds = start_step, resumed["epoch_seconds"]
                hidden = [h.to(device) for h in resumed["hidden"]]
                loss_sum = resumed["loss_sum"].to(device)
            bar = progress_bar(
                range(first_step, schedule.n_steps),
                desc=f"epoch {epoch}/{n_epochs}",
                unit="batch",
                enabled=progress and (distributed is None or distributed.is_main),
            )
            # the compile settings only matter while tracing: entered once the step compiles,
            # so that a fit that stays eager never imports torch's compiler (about a second)
            with contextlib.ExitStack() as settings:
                settings_entered = False
                for step in bar:
                    if phase is not None:
                        wanted = phase(epoch - 1, step)
                        if wanted != current_phase:
                            network.set_phase(wanted)
                            current_phase = wanted
                    changes = lane_changes.get(step)
                    if changes and not (step == first_step and first_step > 0):
                        if window is not None:
                            window.lanes_changed(changes, len(hidden[0]))
                        hidden = _apply_lane_changes(hidden, changes)
                    if step % CHUNK_STEPS == 0:
                        planned, random_before = planner.chunk(step)
                        if (
                            checkpoint is not None
                            and checkpoint.every_minutes is not None
                            and step > first_step
                            and time.monotonic() - last_save >= 60 * checkpoint.every_minutes
                        ):
                            save(
                                epoch,
                                step,
                                random_before,
                                [h.detach() for h in hidden],
                                loss_sum.detach().clone(),
                                earlier_seconds + time.perf_counter() - started,
                            )
                    planned_step = planned[step % CHUNK_STEPS]
                    if decision.compiled and not settings_entered:
                        settings.enter_context(compile_settings(True))
                        settings_entered = True
                    decision.before_step()
                    loss, hidden = _train_step(
                        network,
                        planned_step,
                        hidden,
                        step_loss,
                        optimizer,
                        decision,
                        exchange,
                        window,
                    )
                    decision.after_step()
                    loss_sum.add_(loss, alpha=step_offsets[step + 1] - step_offsets[step])
            bar.close()
            seconds = earlier_seconds + time.perf_counter() - started
            n_targets, total_loss = schedule.n_targets, float(loss_sum)
            if distributed is not None:  # the epoch over every process's shard
                total_loss, n_targets = distributed.total([total_loss, n_targets])
                n_targets = int(n_targets)
            mean_loss = total_loss / n_targets
            if not np.isfinite(mean_loss):
                raise TrainingError(
                    f"training diverged in epoch {epoch} (loss {mean_loss}); lower learning_rate"
                )
            report = EpochReport(
                epoch=epoch,
                loss=mean_loss,
                seconds=seconds,
                n_events=n_targets,
                events_per_second=n_targets / seconds,
            )
            if validate is not None:
                network.eval()
                if current_phase is not None:
                    # score with the subnets in the output so far (residual adds them one by one)
                    network.set_phase(dataclasses.replace(current_phase, trainable=frozenset()))
                    current_phase = None
                if distributed is None:
                    metrics = validate()
                else:  # one validation, process 0's, so that every process decides alike
                    metrics = distributed.from_main(validate)
                if valid_metric not in metrics:
                    raise ConfigError(
                        f"valid_metric must be one of {', '.join(metrics)}; got {valid_metric!r}"
                    )
                report.valid = {k: metrics[k] for k in ("recall@20", "mrr@20") if k in metrics}
                report.valid.setdefault(valid_metric, metrics[valid_metric])
                value = metrics[valid_metric]
                if epoch <= early_stopping_from:
                    pass  # an earlier stage of the schedule: reported, not a candidate
                elif value > best_value:
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
            if patience > 0 and validate is not None and epochs_without_gain >= patience:
                log.info("early stopping: no %s gain for %d epoch(s)", valid_metric, patience)
                break
            if checkpoint is not None and epoch < n_epochs:
                # the next epoch's first chunk may be planned already: its random state before
                save(epoch + 1, 0, planner.pending_random_state() or random_state())
        if best_state is not None:
            with torch.no_grad():
                for name, tensor in _trained_tensors(network).items():
                    tensor.copy_(best_state[name])
    finally:
        planner.close()
        network.output_dtype = None  # scoring stays float32
    network.eval()
    if optimizer_out is not None:
        optimizer_out.update(optimizer.state_tensors())
    return reports
