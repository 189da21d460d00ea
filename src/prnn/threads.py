"""How many intra-op threads prnn's work runs with: a policy instead of PyTorch's default.

PyTorch starts as many intra-op threads as the machine has physical cores. GRU4Rec's recurrent
training step is a chain of small matrix products, each a parallel region whose threads meet at
a barrier: on a quiet 2-core machine two threads buy 10-20%, and as soon as another process
keeps one core busy, every region waits for the thread that lost its core, and training runs 4x
slower (GRU4Rec on rsc15_100k, preset ``rsc15``: 7,700-8,400 events/s alone, 1,684-1,817 beside
one ``python3 -c "while True: pass"``, 6,943 beside it with ``OMP_NUM_THREADS=1``).

So prnn chooses the thread count itself (:func:`resolve_threads`), in this order:

1. an explicit request: ``--threads N`` on the command line, ``threads=N`` in the Python API;
2. the ``PRNN_THREADS`` environment variable;
3. the user's own ``OMP_NUM_THREADS`` (or ``MKL_NUM_THREADS``): PyTorch has already read it,
   and prnn leaves PyTorch's count alone;
4. the policy (:func:`threads_for`): from the work of one step of the job at hand and the CPUs
   the process may use (:func:`usable_cpus`: its CPU affinity, capped by a cgroup CPU quota;
   :func:`usable_cores`: hyper-threads of a core counted once).

The policy gives a step ``1 + work // WORK_PER_EXTRA_THREAD`` threads (multiply-adds per step,
:func:`recurrent_step_work`), at most one per usable core; the recurrent training step leaves
``TRAIN_SPARE_CORES`` (1) core to the rest of the machine, so on 2 cores it trains on 1 thread
whatever its size. A training step without a work estimate gets 1 thread; evaluation, kNN
similarity and feature extraction without one (long, independent products over many sessions
or items) get one thread per usable core.

:func:`using_threads` applies a choice for the duration of a ``with`` block and then restores
the previous count, so that a library call does not change the caller's process-wide setting.

Calibration: see docs/threads.md (figures and commands); in short, on the 2-core development
machine two threads speed up the matrix products of a GRU4Rec step 1.4-1.9x from about 2e7
multiply-adds when nothing else runs, the whole training step (with its element-wise and
indexing work) far less, and beside any other busy process two threads lose at every size.

Importing this module is cheap: it reads no files and imports PyTorch only when a function
needs it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prnn.errors import ConfigError

#: Environment variable overriding the policy (below an explicit ``--threads``/``threads=``).
ENV_VAR = "PRNN_THREADS"
#: Variables by which a user sets OpenMP's/MKL's thread count; PyTorch reads them at start-up.
USER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Workloads the policy knows: the recurrent training step, work that parallelises well, and
#: the service's per-request scoring.
WORKLOADS = ("train", "evaluate", "knn", "features", "serve")
#: Multiply-adds per step that pay for one more thread (calibrated: see the module doc).
WORK_PER_EXTRA_THREAD = 1.0e8
#: Cores the recurrent training step leaves to the rest of the machine (see threads_for).
TRAIN_SPARE_CORES = 1

#: Where cgroup file systems are mounted (tests point it at fake files).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The calling process's cgroup membership (tests point it at a fake file).
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
#: CPU topology, for counting physical cores (tests point it at fake files).
CPU_SYSFS = Path("/sys/devices/system/cpu")


# --------------------------------------------------------------------------------------------
# CPUs this process may use
# --------------------------------------------------------------------------------------------


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_paths() -> tuple[str | None, str | None]:
    """(cgroup v2 path, cgroup v1 ``cpu`` controller path) of this process, from /proc."""
    text = _read_text(PROC_SELF_CGROUP)
    v2 = v1 = None
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _candidate_dirs(base: Path, relative: str | None) -> list[Path]:
    """The cgroup directory of the process under ``base`` and the mount's root (inside a
    container with its own cgroup namespace, they are the same), deduplicated."""
    dirs = []
    if relative and relative.strip("/"):
        dirs.append(base / relative.strip("/"))
    dirs.append(base)
    return list(dict.fromkeys(dirs))


def _quota_v2(directory: Path) -> float | None:
    """CPUs allowed by ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); None when unlimited."""
    text = _read_text(directory / "cpu.max")
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = float(parts[0])
        period = float(parts[1]) if len(parts) > 1 else 100_000.0
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _quota_v1(directory: Path) -> float | None:
    """CPUs allowed by ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None when unlimited (-1)."""
    quota_text = _read_text(directory / "cpu.cfs_quota_us")
    period_text = _read_text(directory / "cpu.cfs_period_us")
    if not quota_text or not period_text:
        return None
    try:
        quota, period = float(quota_text), float(period_text)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def cgroup_cpu_limit() -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None if there is none.

    Reads cgroup v2's ``cpu.max`` and cgroup v1's ``cpu.cfs_quota_us``/``cpu.cfs_period_us``
    (mounted at ``cpu``, ``cpu,cpuacct`` or ``cpuacct,cpu``), in the process's own cgroup and at
    the mount's root; the smallest quota found applies. Missing or unreadable files and
    "max"/-1 mean no limit.
    """
    v2_path, v1_path = _cgroup_paths()
    limits = []
    for directory in _candidate_dirs(CGROUP_ROOT, v2_path):
        limits.append(_quota_v2(directory))
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for directory in _candidate_dirs(CGROUP_ROOT / mount, v1_path):
            limits.append(_quota_v1(directory))
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def usable_cpus() -> int:
    """Logical CPUs this process may run on: its CPU affinity (``os.sched_getaffinity``; else
    ``os.cpu_count()``), capped by a cgroup CPU quota (rounded down: a quota of 1.5 CPUs is 1),
    and at least 1."""
    affinity = _affinity()
    count = len(affinity) if affinity else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.floor(limit))
    return max(1, count)


def _physical_cores(cpus: set[int] | None) -> int | None:
    """Distinct (package, core) pairs among ``cpus`` (hyper-threads count once); None when the
    topology cannot be read."""
    if not cpus:
        return None
    cores = set()
    for cpu in cpus:
        topology = CPU_SYSFS / f"cpu{cpu}" / "topology"
        core = _read_text(topology / "core_id")
        package = _read_text(topology / "physical_package_id")
        if core is None:
            return None
        cores.add((package, core))
    return len(cores)


def usable_cores() -> int:
    """:func:`usable_cpus`, counting the hyper-threads of one physical core once (PyTorch's own
    default counts physical cores: a second hyper-thread rarely speeds up dense arithmetic)."""
    cpus = usable_cpus()
    physical = _physical_cores(_affinity())
    return max(1, min(cpus, physical)) if physical else cpus


# --------------------------------------------------------------------------------------------
# The policy
# --------------------------------------------------------------------------------------------


def recurrent_step_work(
    batch_size: int,
    n_sample: int,
    layers: Sequence[int],
    *,
    input_size: int | None = None,
    n_items: int | None = None,
) -> float:
    """Multiply-adds of the matrix products of one session-parallel training step (forward and
    backward) of one GRU stack with a sampled output layer.

    Output: scores (B, H) x (H, U), then the gradients of the hidden state and of the U output
    rows, U = ``batch_size + n_sample`` columns (at most ``n_items``, the catalogue: the step
    scores distinct items): ``3 B U H``. Each GRU layer: the input and recurrent products to the
    three gates and their two gradients each, ``3 B (in + H) 3H``; the first layer's input is
    ``input_size`` wide (default: the last layer's size, GRU4Rec's constrained embedding).
    For several subnets (p-RNN), add their ``layers``' terms (``n_sample=0``, no output) and
    the output's over the concatenated state.
    """
    if not layers:
        raise ConfigError("recurrent_step_work needs at least one layer size")
    batch = float(batch_size)
    columns = float(batch_size + n_sample)
    if n_items is not None:
        columns = min(columns, float(n_items))
    previous = float(input_size if input_size is not None else layers[-1])
    work = 3.0 * batch * columns * float(layers[-1])
    for hidden in layers:
        work += 3.0 * batch * (previous + hidden) * 3.0 * hidden
        previous = float(hidden)
    return work


def threads_for(workload: str, *, work_per_step: float | None = None) -> int:
    """The policy: intra-op threads for ``workload`` ("train", "evaluate", "knn", "features").

    With ``work_per_step`` (multiply-adds of one step, e.g. :func:`recurrent_step_work`):
    ``1 + work_per_step // WORK_PER_EXTRA_THREAD`` threads, at most one per usable core
    (:func:`usable_cores`), and for "train" at most ``usable_cores() - TRAIN_SPARE_CORES`` (but
    1 at least): the recurrent step's short parallel regions stall whenever one of their
    threads loses its core, so training leaves a core to the rest of the machine. Without a
    work estimate, "train" gets 1 thread and the other workloads, which parallelise well, one
    per usable core.
    """
    return _policy(workload, work_per_step)[0]


def _check_workload(workload: str) -> None:
    if workload not in WORKLOADS:
        raise ConfigError(
            f"unknown thread workload {workload!r}; expected one of {', '.join(WORKLOADS)}"
        )


def _threads_by_work(work_per_step: float) -> int:
    if not (
        isinstance(work_per_step, int | float)
        and not isinstance(work_per_step, bool)
        and math.isfinite(work_per_step)
    ):
        raise ConfigError(f"work_per_step must be a finite number; got {work_per_step!r}")
    return 1 + int(max(0.0, float(work_per_step)) // WORK_PER_EXTRA_THREAD)


def _policy(workload: str, work_per_step: float | None) -> tuple[int, str]:
    _check_workload(workload)
    cores = usable_cores()
    limit = max(1, cores - TRAIN_SPARE_CORES) if workload == "train" else cores
    spare = f", {TRAIN_SPARE_CORES} left spare" if workload == "train" else ""
    if work_per_step is not None:
        wanted = _threads_by_work(work_per_step)
        return min(limit, wanted), (
            f"policy: {workload}, {work_per_step:.3g} multiply-adds per step "
            f"(a thread per {WORK_PER_EXTRA_THREAD:.3g}), {cores} usable core(s){spare}"
        )
    if workload == "train":
        return 1, "policy: train, no work estimate: 1 thread for the recurrent step"
    if workload == "serve":
        # a request is one small step and one scoring pass: its products are too short to
        # split, and the other cores serve the event loop and concurrent requests
        return 1, "policy: serve, 1 thread per request, the other cores for concurrent requests"
    return limit, f"policy: {workload} parallelises well, {cores} usable core(s)"


# --------------------------------------------------------------------------------------------
# Resolution and application
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadChoice:
    """A resolved thread count and why.

    Attributes:
        n: intra-op threads to run with; None = leave PyTorch's count as it is (the user set
            ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, which PyTorch has read).
        reason: where it came from: "--threads", "threads=", "PRNN_THREADS",
            "OMP_NUM_THREADS set by the user" or "policy: ...".
    """

    n: int | None
    reason: str

    @property
    def respects_user(self) -> bool:
        return self.n is None

    def threads(self) -> int:
        """The count work will run with (PyTorch's current one when ``n`` is None)."""
        if self.n is not None:
            return self.n
        import torch

        return torch.get_num_threads()

    def describe(self) -> str:
        """E.g. "1 intra-op thread (policy: train, ...)", for logs."""
        n = self.threads()
        return f"{n} intra-op thread{'s' if n != 1 else ''} ({self.reason})"


def parse_thread_count(value: object, source: str) -> int:
    """A positive thread count from ``value`` (int or text); ConfigError naming ``source``."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            number = None
    if number is None or number < 1:
        raise ConfigError(
            f"{source} expects a positive number of threads like 1 or 4; got {value!r}"
        )
    return number


def user_thread_setting() -> tuple[str, str] | None:
    """(variable, value) of the first of OMP_NUM_THREADS, MKL_NUM_THREADS set (non-empty) in
    the environment, else None."""
    for name in USER_THREAD_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return None


def resolve_threads(
    requested: int | str | None,
    workload: str = "train",
    *,
    work_per_step: float | None = None,
    source: str = "--threads",
) -> ThreadChoice:
    """The thread count for ``workload``: ``requested`` (named ``source`` in messages: the
    CLI's "--threads", or "threads=" for the Python API) > ``PRNN_THREADS`` > the user's
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (n=None: PyTorch's count is left alone) > the
    policy (:func:`threads_for`).

    Raises:
        ConfigError: for a requested or ``PRNN_THREADS`` value that is not a positive integer,
            or an unknown workload.
    """
    _check_workload(workload)
    if requested is not None:
        return ThreadChoice(parse_thread_count(requested, source), source)
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return ThreadChoice(parse_thread_count(env, f"the environment variable {ENV_VAR}"), ENV_VAR)
    user = user_thread_setting()
    if user is not None:
        return ThreadChoice(None, f"{user[0]} set by the user")
    n, reason = _policy(workload, work_per_step)
    return ThreadChoice(n, reason)


@contextlib.contextmanager
def using_threads(choice: ThreadChoice | int | None) -> Iterator[int]:
    """Run the block with ``choice``'s intra-op thread count (``torch.set_num_threads``), then
    restore the previous count. Does nothing for None or a choice that respects the user's
    ``OMP_NUM_THREADS``. Yields the count in effect inside the block."""
    import torch

    if isinstance(choice, ThreadChoice):
        n = choice.n
    elif choice is None:
        n = None
    else:
        n = parse_thread_count(choice, "using_threads")
    previous = torch.get_num_threads()
    if n is None:
        yield previous
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
