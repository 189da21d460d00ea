"""The thread policy: precedence, the user's OMP_NUM_THREADS, applying and restoring counts,
cgroup quotas, and errors naming their source."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from prnn import threads
from prnn.errors import ConfigError
from prnn.threads import (
    WORK_PER_EXTRA_THREAD,
    ThreadChoice,
    recurrent_step_work,
    resolve_threads,
    threads_for,
    usable_cpus,
    using_threads,
)

THREAD_VARS = ("PRNN_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def torch_threads():
    """Restores torch's thread count after the test, whatever it did."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@pytest.fixture
def four_cores(monkeypatch):
    """A machine with four usable cores, whatever this one has."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)


# ---- precedence ------------------------------------------------------------------------------


def test_request_beats_env_beats_user_omp_beats_policy(clean_env, four_cores):
    clean_env.setenv("PRNN_THREADS", "3")
    clean_env.setenv("OMP_NUM_THREADS", "4")
    assert resolve_threads(2, "evaluate") == ThreadChoice(2, "--threads")
    assert resolve_threads(2, "evaluate", source="threads=").reason == "threads="

    assert resolve_threads(None, "evaluate") == ThreadChoice(3, "PRNN_THREADS")

    clean_env.delenv("PRNN_THREADS")
    choice = resolve_threads(None, "evaluate")
    assert choice.n is None and choice.respects_user
    assert choice.reason == "OMP_NUM_THREADS set by the user"

    clean_env.delenv("OMP_NUM_THREADS")
    choice = resolve_threads(None, "evaluate")
    assert choice.n == 4  # one per usable core: evaluation parallelises well
    assert choice.reason.startswith("policy: evaluate")
    choice = resolve_threads(None, "train", work_per_step=WORK_PER_EXTRA_THREAD * 2)
    assert choice.n == 3
    assert choice.reason.startswith("policy: train")


def test_mkl_num_threads_counts_as_the_users_setting(clean_env):
    clean_env.setenv("MKL_NUM_THREADS", "2")
    assert resolve_threads(None, "train") == ThreadChoice(None, "MKL_NUM_THREADS set by the user")


def test_empty_variables_count_as_unset(clean_env, four_cores):
    clean_env.setenv("PRNN_THREADS", "")
    clean_env.setenv("OMP_NUM_THREADS", " ")
    assert resolve_threads(None, "knn").n == 4


# ---- applying a choice -----------------------------------------------------------------------


def test_threads_1_is_applied_inside_and_restored_after(clean_env, torch_threads):
    torch.set_num_threads(2)
    with using_threads(resolve_threads(1, "evaluate")) as n:
        assert n == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_prnn_threads_is_applied(clean_env, torch_threads):
    clean_env.setenv("PRNN_THREADS", "1")
    torch.set_num_threads(2)
    with using_threads(resolve_threads(None, "evaluate")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_count_is_restored_after_an_exception(torch_threads):
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError), using_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_a_choice_respecting_the_user_leaves_torch_alone(torch_threads):
    torch.set_num_threads(2)
    with using_threads(ThreadChoice(None, "OMP_NUM_THREADS set by the user")) as n:
        assert n == 2 and torch.get_num_threads() == 2
    with using_threads(None):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


USER_OMP_SCRIPT = """
import sys, torch
from prnn.threads import resolve_threads, using_threads
workload, work = sys.argv[1], float(sys.argv[2])
before = torch.get_num_threads()
choice = resolve_threads(None, workload, work_per_step=work)
with using_threads(choice):
    inside = torch.get_num_threads()
print(before, inside, torch.get_num_threads(), choice.n, choice.reason, sep="|")
"""


@pytest.mark.parametrize(
    ("omp", "workload", "work"),
    [
        # the policy would give every core (or 1 on a 1-core machine: then choice.n tells)
        ("1", "evaluate", 1e15),
        ("1", "train", 1e15),
        # the policy would give 1 thread to a small training step (torch caps the variable's
        # count at the machine's cores: 2 on 2 or more)
        ("2", "train", 1.0),
    ],
)
def test_users_omp_num_threads_is_respected(omp, workload, work):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["OMP_NUM_THREADS"] = omp
    result = subprocess.run(
        [sys.executable, "-c", USER_OMP_SCRIPT, workload, str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    before, inside, after, n, reason = result.stdout.strip().splitlines()[-1].split("|")
    assert before == inside == after
    if omp == "1":
        assert before == "1"
    assert n == "None"
    assert reason == "OMP_NUM_THREADS set by the user"


# ---- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "x", "1.5", "", True])
def test_bad_request_names_the_option(clean_env, value):
    with pytest.raises(ConfigError, match="--threads expects a positive number of threads"):
        resolve_threads(value, "train")


def test_bad_request_names_the_api_argument(clean_env):
    with pytest.raises(ConfigError, match="threads= expects"):
        resolve_threads(0, "train", source="threads=")


@pytest.mark.parametrize("value", ["0", "-1", "x", "2 threads"])
def test_bad_prnn_threads_names_the_variable(clean_env, value):
    clean_env.setenv("PRNN_THREADS", value)
    with pytest.raises(ConfigError, match=f"PRNN_THREADS expects .*got {value!r}"):
        resolve_threads(None, "train")


def test_request_wins_over_a_bad_prnn_threads(clean_env):
    clean_env.setenv("PRNN_THREADS", "x")
    assert resolve_threads(2, "train").n == 2


def test_unknown_workload(clean_env):
    with pytest.raises(ConfigError, match="unknown thread workload 'training'"):
        resolve_threads(None, "training")
    with pytest.raises(ConfigError, match="expected one of train, evaluate"):
        threads_for("training")


def test_using_threads_rejects_bad_counts(torch_threads):
    with pytest.raises(ConfigError, match="using_threads expects"), using_threads(0):
        pass


# ---- the policy ------------------------------------------------------------------------------


def test_policy_by_work(four_cores):
    assert threads_for("train") == 1
    assert threads_for("train", work_per_step=0) == 1
    assert threads_for("train", work_per_step=WORK_PER_EXTRA_THREAD * 0.99) == 1
    assert threads_for("train", work_per_step=WORK_PER_EXTRA_THREAD) == 2
    assert threads_for("train", work_per_step=WORK_PER_EXTRA_THREAD * 2.5) == 3
    # training leaves a core spare: 3 of 4
    assert threads_for("train", work_per_step=WORK_PER_EXTRA_THREAD * 100) == 3
    for workload in ("evaluate", "knn", "features"):
        assert threads_for(workload) == 4
        assert threads_for(workload, work_per_step=WORK_PER_EXTRA_THREAD * 100) == 4
    assert threads_for("evaluate", work_per_step=1.0) == 1
    assert threads_for("evaluate", work_per_step=WORK_PER_EXTRA_THREAD * 1.5) == 2


def test_training_on_two_cores_takes_one_thread_whatever_the_work(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads_for("train", work_per_step=1e15) == 1
    assert threads_for("evaluate", work_per_step=1e15) == 2
    assert threads_for("evaluate") == 2


def test_policy_never_exceeds_one_core(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    assert threads_for("train", work_per_step=1e15) == 1
    assert threads_for("evaluate") == 1


def test_policy_rejects_a_nonsense_work_estimate():
    for bad in (float("nan"), float("inf"), "many", True):
        with pytest.raises(ConfigError, match="work_per_step must be a finite number"):
            threads_for("train", work_per_step=bad)


def test_gru4rec_rsc15_preset_trains_on_one_thread(four_cores):
    """The measured case of the issue: preset rsc15 (batch 32, 2048 samples, 100 units) on
    rsc15_100k's 2,933 items is 1-thread work."""
    work = recurrent_step_work(32, 2048, (100,), n_items=2933)
    assert work == 3 * 32 * 2080 * 100 + 3 * 32 * 200 * 300
    assert threads_for("train", work_per_step=work) == 1


def test_recurrent_step_work_terms():
    # output 3*B*U*H, layer 1 (input 10) 3*B*(10+20)*3*20, layer 2 3*B*(20+5)*3*5
    assert recurrent_step_work(2, 3, (20, 5), input_size=10) == (
        3 * 2 * 5 * 5 + 3 * 2 * 30 * 60 + 3 * 2 * 25 * 15
    )
    # the catalogue caps the output columns
    assert recurrent_step_work(2, 1000, (4,), n_items=10) == 3 * 2 * 10 * 4 + 3 * 2 * 8 * 12
    with pytest.raises(ConfigError):
        recurrent_step_work(2, 3, ())


def test_describe():
    assert ThreadChoice(1, "--threads").describe() == "1 intra-op thread (--threads)"
    assert ThreadChoice(3, "PRNN_THREADS").describe() == "3 intra-op threads (PRNN_THREADS)"


# ---- CPUs the process may use ----------------------------------------------------------------


@pytest.fixture
def fake_system(tmp_path, monkeypatch):
    """A fake /sys/fs/cgroup, /proc/self/cgroup and CPU topology; 8 CPUs in the affinity."""
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/\n")
    sysfs = tmp_path / "cpu"
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_SELF_CGROUP", proc)
    monkeypatch.setattr(threads, "CPU_SYSFS", sysfs)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    return root, proc, sysfs


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_cgroup_files_means_the_affinity(fake_system):
    assert threads.cgroup_cpu_limit() is None
    assert usable_cpus() == 8


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("200000 100000\n", 2),
        ("150000 100000", 1),  # 1.5 CPUs: rounded down
        ("50000 100000", 1),  # half a CPU: still 1
        ("1600000 100000", 8),  # above the affinity: the affinity
        ("max 100000", 8),
        ("max", 8),
        ("", 8),
        ("garbage here", 8),
        ("-1 100000", 8),
        ("300000", 3),  # no period: the default 100 ms
    ],
)
def test_cgroup_v2_cpu_max(fake_system, text, cpus):
    root, _, _ = fake_system
    write(root / "cpu.max", text)
    assert usable_cpus() == cpus


def test_cgroup_v2_in_the_process_own_group(fake_system):
    root, proc, _ = fake_system
    proc.write_text("0::/user.slice/job-1\n")
    write(root / "user.slice" / "job-1" / "cpu.max", "300000 100000")
    assert threads.cgroup_cpu_limit() == pytest.approx(3.0)
    write(root / "cpu.max", "200000 100000")  # the tighter of the two applies
    assert usable_cpus() == 2


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("400000", "100000", 4), ("-1", "100000", 8), ("x", "100000", 8), ("100000", "0", 8)],
)
def test_cgroup_v1_quota(fake_system, quota, period, cpus):
    root, proc, _ = fake_system
    proc.write_text("4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", quota)
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", period)
    assert usable_cpus() == cpus


def test_cgroup_v1_quota_at_the_mount_root(fake_system):
    root, _, _ = fake_system
    write(root / "cpu" / "cpu.cfs_quota_us", "250000")
    write(root / "cpu" / "cpu.cfs_period_us", "100000")
    assert threads.cgroup_cpu_limit() == pytest.approx(2.5)
    assert usable_cpus() == 2


def test_without_affinity_the_cpu_count(fake_system, monkeypatch):
    def unsupported(pid):
        raise OSError("not here")

    monkeypatch.setattr(os, "sched_getaffinity", unsupported)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus() == 1


def test_hyper_threads_count_once(fake_system):
    _, _, sysfs = fake_system
    for cpu in range(8):  # 4 cores with 2 hyper-threads each
        write(sysfs / f"cpu{cpu}" / "topology" / "core_id", str(cpu % 4))
        write(sysfs / f"cpu{cpu}" / "topology" / "physical_package_id", "0")
    assert usable_cpus() == 8
    assert threads.usable_cores() == 4
    assert threads_for("evaluate") == 4


def test_unreadable_topology_falls_back_to_cpus(fake_system):
    assert threads.usable_cores() == 8


def test_real_machine_is_sane():
    assert 1 <= threads.usable_cores() <= usable_cpus() <= (os.cpu_count() or 1)


# ---- applied by training, evaluation and the CLI ---------------------------------------------


def _cyclic_log():
    from tests.conftest import make_log

    cycle = [f"c{i}" for i in range(6)]
    return make_log({s: [cycle[(s + k) % 6] for k in range(6)] for s in range(30)})


def test_fit_trains_with_the_requested_threads_and_restores_the_count(clean_env, torch_threads):
    from prnn.models import GRU4Rec

    torch.set_num_threads(2)
    seen = []
    GRU4Rec(layers=(8,), batch_size=4, n_sample=2, n_epochs=2).fit(
        _cyclic_log(),
        threads=1,
        epoch_callback=lambda report, network, optimizer: seen.append(torch.get_num_threads()),
    )
    assert seen == [1, 1]
    assert torch.get_num_threads() == 2


def test_cli_threads_reaches_training(clean_env, torch_threads, tmp_path, monkeypatch):
    from prnn.cli import main
    from prnn.data import write_events

    applied = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (applied.append(n), real(n)))
    write_events(_cyclic_log(), tmp_path / "train.csv")
    argv = ["--quiet", "--threads", "1", "train", str(tmp_path / "train.csv"), "--model"]
    code = main(argv + ["gru4rec", "--set", "n_epochs=1", "--out", str(tmp_path / "m.prnn")])
    assert code == 0
    assert applied and applied[0] == 1  # set for the training, then restored
    assert "PRNN_THREADS" not in os.environ  # the flag does not outlive the command


def test_training_respects_the_users_omp_num_threads(clean_env):
    """With OMP_NUM_THREADS=2 set by the user, training keeps PyTorch's 2 threads, where the
    policy alone would take 1 (it leaves a core spare on machines of up to 2 cores)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    script = (
        "import torch\n"
        "from prnn.models import GRU4Rec\n"
        "from tests.test_threads import _cyclic_log\n"
        "seen = [torch.get_num_threads()]\n"
        "GRU4Rec(layers=(8,), batch_size=4, n_sample=2, n_epochs=1).fit(_cyclic_log(),\n"
        "    epoch_callback=lambda r, n, o: seen.append(torch.get_num_threads()))\n"
        "print(*seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["OMP_NUM_THREADS"] = "2"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=root
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2"]
