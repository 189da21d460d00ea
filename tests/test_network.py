"""The one network and its hand-written training step, for every architecture and phase.

GRU4Rec (one ID subnet in each embedding mode), feature-only, concat and p-RNN networks with
dense and sparse inputs: the hand-written backward pass against autograd over the same forward
pass, the training forward pass against inference, the compiled step against the eager one, and
the compile decision and its fallback.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from prnn.models.gru4rec import GRU4RecConfig
from prnn.network import FeatureLookup, Network, Phase, SubnetSpec
from prnn.optim import AdagradMomentum
from prnn.training import make_step_loss, sampled_loss
from prnn.training.step_plan import plan_steps

N_ITEMS = 8
# one mini-batch: lanes 1 and 2 share an input; outputs repeat items and overlap the inputs
STEP_INPUTS = torch.tensor([1, 3, 3, 0])
STEP_OUTPUTS = torch.tensor([2, 3, 5, 1, 2, 6, 6, 0, 4, 2])
STEP_TARGETS, STEP_SAMPLES = STEP_OUTPUTS[:4], STEP_OUTPUTS[4:]


def _dense_lookup(dim: int = 7) -> FeatureLookup:
    lookup = FeatureLookup(dim=dim, sparse=False, n_items=N_ITEMS)
    lookup.matrix.normal_(generator=torch.Generator().manual_seed(3))
    return lookup


def _sparse_lookup(dim: int = 20) -> FeatureLookup:
    """Item i has columns i, i + 1 and 2 * i (one of them shared with its neighbours)."""
    columns = [sorted({i, i + 1, 2 * i}) for i in range(N_ITEMS)]
    lengths = torch.tensor([len(c) for c in columns])
    lookup = FeatureLookup(dim=dim, sparse=True, n_items=N_ITEMS, nnz=int(lengths.sum()))
    lookup.indptr.copy_(torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]))
    lookup.indices.copy_(torch.tensor([c for row in columns for c in row]))
    lookup.values.uniform_(0.2, 1.0, generator=torch.Generator().manual_seed(4))
    return lookup


# architecture -> (subnets, network settings)
ARCHITECTURES = {
    "gru4rec-constrained": ([SubnetSpec("id", ("id",), (6,))], {}),
    "gru4rec-separate-2-layers": (
        [SubnetSpec("id", ("id",), (6, 4))],
        {"embedding_mode": "separate", "embedding": 5},
    ),
    "gru4rec-one-hot-2-layers": (
        [SubnetSpec("id", ("id",), (6, 4))],
        {"embedding_mode": "one-hot"},
    ),
    "feature-only-dense-and-sparse": ([SubnetSpec("features", ("img", "txt"), (6,))], {}),
    "concat-constrained-dense": ([SubnetSpec("concat", ("id", "img"), (6,))], {}),
    "concat-one-hot-sparse": (
        [SubnetSpec("concat", ("id", "txt"), (6,))],
        {"embedding_mode": "one-hot"},
    ),
    "prnn-constrained": (
        [SubnetSpec("id", ("id",), (6,)), SubnetSpec("img", ("img",), (5,))],
        {"subnet_weights": [1.0, 0.7]},
    ),
    "prnn-embedded-sparse": (
        [SubnetSpec("id", ("id",), (6,)), SubnetSpec("txt", ("txt", "img"), (5,))],
        {"sparse_embedding": 4},
    ),
    "prnn-separate-learned-weights": (
        [
            SubnetSpec("id", ("id",), (6,)),
            SubnetSpec("img", ("img",), (5,)),
            SubnetSpec("txt", ("txt",), (4, 3)),
        ],
        {"embedding_mode": "separate", "embedding": 5, "learn_subnet_weights": True},
    ),
    # items' output vectors from their features: added to the ID rows, or instead of them
    "prnn-hybrid-output": (
        [SubnetSpec("id", ("id",), (6,)), SubnetSpec("img", ("img",), (5,))],
        {"output": "hybrid", "output_features": ("img",)},
    ),
    "prnn-hybrid-output-id-dropout": (
        [SubnetSpec("id", ("id",), (6,)), SubnetSpec("img", ("img",), (5,))],
        {"output": "hybrid", "output_features": ("img",), "output_id_dropout": 0.5},
    ),
    "prnn-features-output": (
        [SubnetSpec("id", ("id",), (6,)), SubnetSpec("txt", ("txt",), (5,))],
        {
            "embedding_mode": "separate",
            "embedding": 5,
            "output": "features",
            "output_features": ("img",),
        },
    ),
    "feature-only-features-output": (
        [SubnetSpec("features", ("img", "txt"), (6,))],
        {"output": "features", "output_features": ("img",)},
    ),
}


def _network(architecture: str, **extra) -> Network:
    specs, settings = ARCHITECTURES[architecture]
    network = Network(
        N_ITEMS,
        specs,
        {"img": _dense_lookup(), "txt": _sparse_lookup()},
        dropout_p_embed=0.3,
        dropout_p_hidden=0.4,
        **{**settings, **extra},
    )
    read = {n for s in specs for n in s.inputs} | set(network.output_features)
    network.features = torch.nn.ModuleDict({n: f for n, f in network.features.items() if n in read})
    network.reset_parameters(torch.Generator().manual_seed(1))
    return network


def _phases(network: Network) -> dict[str, Phase | None]:
    names = network.names
    phases = {"all": None}
    if len(names) > 1:
        everything = frozenset(names)
        phases["first-frozen"] = Phase(everything, frozenset(names[1:]))
        phases["only-first"] = Phase(everything, frozenset(names[:1]))
        phases["residual-second"] = Phase(frozenset(names[:2]), frozenset(names[1:2]))
    return phases


def _config(loss: str) -> GRU4RecConfig:
    return GRU4RecConfig(
        loss=loss, batch_size=4, n_sample=6, bpreg=0.5, elu_param=0.5 if loss == "bpr-max" else 0
    )


def _log_q() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item logQ corrections: (for targets, for samples)."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(N_ITEMS, generator=generator), torch.rand(N_ITEMS, generator=generator)


def _plan(network: Network, config, generator: torch.Generator | None, n_steps: int = 1):
    step_loss = make_step_loss(config)
    log_q = _log_q() if config.loss == "cross-entropy" else None
    return plan_steps(
        id_mode=network.id_mode,
        n_items=N_ITEMS,
        inputs=STEP_INPUTS.repeat(n_steps),
        targets=STEP_TARGETS.repeat(n_steps),
        sizes=[len(STEP_INPUTS)] * n_steps,
        samples=STEP_SAMPLES[None, :].repeat(n_steps, 1),
        log_q=log_q,
        with_row_weights=step_loss.needs_row_weights,
        dropout=network.dropout_specs(),
        generator=generator,
        sparse_features=network.sparse_features(),
        row_dropout=network.output_id_dropout,
    )


def _hidden(network: Network) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return [torch.randn(h.shape, generator=generator) for h in network.initial_hidden(4)]


def _cases():
    for architecture in ARCHITECTURES:
        for phase_name in _phases(_network(architecture)):
            yield architecture, phase_name


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
@pytest.mark.parametrize("output_blocks_always", [False, True])
@pytest.mark.parametrize("architecture, phase_name", list(_cases()))
def test_hand_written_backward_equals_autograd(
    architecture, phase_name, output_blocks_always, loss
):
    network = _network(architecture, output_blocks_always=output_blocks_always)
    phase = _phases(network)[phase_name]
    network.set_phase(phase)
    config = _config(loss)
    (step,) = _plan(network, config, torch.Generator().manual_seed(5))
    hidden = _hidden(network)

    # by hand: the training step's own forward, loss gradient and backward
    with torch.no_grad():
        gathered = network.gather_rows(step)
        scores, new_hidden, caches = network.forward_train(step, hidden, gathered)
        step_loss = make_step_loss(config)
        loss_value, grad_scores = step_loss.value_and_gradient(scores, *step_loss.prepared(step))
        dense, row_grads = network.backward(step, gathered, caches, grad_scores)

    # by autograd: the same forward pass, the loss written out plainly (logQ per column)
    leaves = {key: rows.clone().requires_grad_() for key, rows in gathered.items()}
    scores_a, _, _ = network.forward_train(step, hidden, leaves)
    column_log_q = None
    if loss == "cross-entropy":
        log_q = _log_q()
        column_log_q = torch.cat([log_q[0][STEP_TARGETS], log_q[1][STEP_SAMPLES]])
    value = sampled_loss(config, scores_a, step.rows.output_columns, column_log_q) / 4
    parameters = dict(network.named_parameters())
    inputs = list(parameters.values()) + list(leaves.values())
    autograd = torch.autograd.grad(value, inputs, allow_unused=True)
    expected = dict(zip(list(parameters) + list(leaves), autograd))

    assert loss_value.item() == pytest.approx(value.item(), rel=1e-5)
    trainable = network.trainable & network.active
    trained_subnets = {
        f"subnets.{i}." for i, s in enumerate(network.subnets) if s.name in trainable
    }
    # frozen subnets get no gradient at all; trainable ones get one for every parameter
    expected_dense = {n for n in parameters if n.startswith(tuple(trained_subnets))}
    if network.output != "id":
        expected_dense.add("output_projection_bias")  # trains in every phase, as the bias rows
        if output_blocks_always:  # a frozen subnet's projection trains with its output block
            expected_dense.update(
                f"subnets.{i}.output_projection"
                for i, s in enumerate(network.subnets)
                if s.name in network.active
            )
    assert set(dense) == expected_dense
    for name, gradient in dense.items():
        torch.testing.assert_close(gradient, expected[name], msg=name)
    active = [s for s in network.subnets if s.name in network.active]
    from_ids = network.output != "features"
    expected_rows = {"bias"} if from_ids else set()
    for subnet in active:
        if (subnet.name in trainable or output_blocks_always) and from_ids:
            expected_rows.add(f"block:{subnet.name}")
        if subnet.name in trainable:
            expected_rows.update(
                k for k in gathered if k.startswith((f"id:{subnet.name}", f"bag:{subnet.name}:"))
            )
    assert set(row_grads) == expected_rows
    for key, gradient in row_grads.items():
        subnet = key.split(":")[1] if ":" in key else None
        if (
            key.startswith("block:")
            and subnet not in trainable
            and network.id_mode == "constrained"
        ):
            # a frozen constrained ID block trains from the scores only: its input side is
            # frozen with the subnet, which autograd over the shared rows cannot tell apart
            if any(s.name == subnet and s.id_mode for s in network.subnets):
                continue
        torch.testing.assert_close(gradient, expected[key], msg=key)
    assert len(new_hidden) == len(hidden)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_training_forward_equals_inference(architecture):
    """Without dropout the training step's states and scores are inference's."""
    network = _network(architecture)
    (step,) = _plan(network, _config("cross-entropy"), generator=None)
    hidden = _hidden(network)
    with torch.no_grad():
        scores, new_hidden, _ = network.forward_train(step, hidden, network.gather_rows(step))
    expected_hidden = network.step(STEP_INPUTS, hidden)
    for got, expected in zip(new_hidden, expected_hidden):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(scores, network.scores(expected_hidden, step.rows.rows))


def _optimizer(network: Network, momentum: float = 0.5) -> AdagradMomentum:
    return AdagradMomentum(list(network.parameters()), network.item_tables(), 0.1, momentum)


def _train_steps(architecture: str, phase_name: str, compiled: bool, n_steps: int = 3):
    network = _network(architecture)
    network.set_phase(_phases(network)[phase_name])
    config = _config("cross-entropy")
    step_loss = make_step_loss(config)
    optimizer = _optimizer(network)
    hidden = _hidden(network)
    for step in _plan(network, config, torch.Generator().manual_seed(5), n_steps):
        loss, hidden = network.train_step(step, hidden, step_loss, optimizer, compiled=compiled)
    return loss, hidden, network.state_dict()


needs_cpp_compiler = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "c++", "clang++")),
    reason="torch.compile on the CPU needs a C++ compiler",
)

# the compile matrix: every architecture, and the p-RNN in the phases of every training method
# (simultaneous = all, alternating/interleaving = one frozen, residual = a subset active)
COMPILE_CASES = [(a, "all") for a in ARCHITECTURES] + [
    ("prnn-separate-learned-weights", p) for p in ("first-frozen", "residual-second")
]


def _assert_same_training(a, b):
    (loss_a, hidden_a, state_a), (loss_b, hidden_b, state_b) = a, b
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    for x, y in zip(hidden_a, hidden_b):
        torch.testing.assert_close(y, x)
    for name, tensor in state_a.items():
        torch.testing.assert_close(state_b[name], tensor, msg=name)


@needs_cpp_compiler
@pytest.mark.parametrize(
    "architecture, phase_name",
    [
        pytest.param(a, p, marks=[] if (a, p) in COMPILE_CASES[-2:] else pytest.mark.slow)
        for a, p in COMPILE_CASES
    ],
)
def test_compiled_step_equals_the_eager_step(architecture, phase_name):
    eager = _train_steps(architecture, phase_name, compiled=False)
    compiled = _train_steps(architecture, phase_name, compiled=True)
    _assert_same_training(eager, compiled)


# ---- the compile decision and its fallback --------------------------------------------------


def test_compile_decision_compiles_only_when_the_steps_left_pay_for_it(monkeypatch):
    from prnn.training import compile as compiling

    now = [0.0]
    monkeypatch.setattr(compiling.time, "process_time", lambda: now[0])
    cpu = torch.device("cpu")

    def decide(total_steps: int, n_graphs: int = 1) -> bool:
        decision = compiling.CompileDecision(None, total_steps, cpu, n_graphs=n_graphs)
        while not decision.decided:
            decision.before_step()
            now[0] += 0.01  # an eager step takes 0.01 s
            decision.after_step()
        return decision.compiled

    # 0.01 s a step, compiled 1.3x faster: compiling (12 s a graph) pays beyond ~5,500 steps,
    # three graphs beyond ~16,000
    assert not decide(3_000)
    assert decide(12_000)
    assert not decide(12_000, n_graphs=3)
    assert compiling.CompileDecision(True, 10, cpu).compiled
    assert not compiling.CompileDecision(False, 10**9, cpu).compiled


def _cyclic_log():
    from tests.conftest import make_log

    cycle = [f"c{i}" for i in range(6)]
    return make_log({s: [cycle[(s + k) % 6] for k in range(6)] for s in range(60)})


SMALL = dict(layers=(16,), batch_size=8, n_sample=4, n_epochs=2, learning_rate=0.1, logq=1.0)


def test_a_compiler_that_fails_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    from prnn.models import GRU4Rec
    from prnn.network import network as network_module

    def broken_compile(function, **options):
        def run(*args, **kwargs):
            raise RuntimeError("C++ compile error: cannot find cl.exe\nmore details")

        return run

    monkeypatch.setattr(network_module.torch, "compile", broken_compile)
    with caplog.at_level(logging.WARNING):
        model = GRU4Rec(**SMALL).fit(_cyclic_log(), compile=True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        "compiling the training step failed (RuntimeError: C++ compile error"
        in warnings[0].msg % warnings[0].args
    )
    monkeypatch.undo()
    eager = GRU4Rec(**SMALL).fit(_cyclic_log(), compile=False)
    for name, tensor in eager.network.state_dict().items():
        assert torch.equal(model.network.state_dict()[name], tensor), name


@needs_cpp_compiler
def test_the_compiled_step_traces_one_graph_whatever_the_step_sizes_and_offsets(monkeypatch):
    """Planned steps are views at ever other offsets, and the batch shrinks at the end of each
    epoch: one graph must serve them all (not a recompilation per shape). Counted with a
    compiler backend of our own, which runs the traced graph as it is."""
    from prnn.models import GRU4Rec
    from prnn.network import network as network_module
    from prnn.training import loop

    traced = []

    def counting_backend(graph_module, example_inputs):
        traced.append(graph_module)
        return graph_module.forward

    real_compile = torch.compile
    monkeypatch.setattr(
        network_module.torch,
        "compile",
        lambda function, **options: real_compile(
            function, **{**options, "backend": counting_backend}
        ),
    )
    monkeypatch.setattr(loop, "CHUNK_STEPS", 3)
    torch._dynamo.reset()
    settings = dict(SMALL, dropout_p_hidden=0.3)
    compiled = GRU4Rec(**settings).fit(_cyclic_log(), compile=True)
    assert len(traced) == 1
    eager = GRU4Rec(**settings).fit(_cyclic_log(), compile=False)
    assert [r.loss for r in compiled.history_] == pytest.approx([r.loss for r in eager.history_])


def test_undecided_compile_stays_eager_for_a_loss_the_graph_cannot_take_whole():
    from prnn.training.compile import CompileDecision

    cpu = torch.device("cpu")
    decision = CompileDecision(None, 10**9, cpu, whole_step=False)
    assert decision.decided and not decision.compiled
    assert CompileDecision(True, 10**9, cpu, whole_step=False).compiled  # asked: compiled
