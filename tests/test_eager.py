"""prnn.eager: functions kept out of compiled code, without importing torch's compiler early."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from prnn import eager


def test_importing_prnn_and_its_commands_does_not_import_the_compiler():
    # torch._dynamo takes about a second to import: only a step that compiles may pay for it
    code = (
        "import sys, prnn.cli, prnn.cli.train, prnn.cli.evaluate, prnn.models, prnn.training\n"
        "from prnn.cli import main\n"
        "compiler = ('torch._dynamo', 'torch._inductor')\n"
        "print(sorted(m for m in sys.modules if m.startswith(compiler)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_fit_that_stays_eager_does_not_import_the_compiler(tmp_path):
    # default flags on a short fit: the compile decision times eager steps and stays eager
    code = (
        "import sys\n"
        "from prnn.bundled import example_events_path\n"
        "from prnn.cli import main\n"
        f"main(['train', str(example_events_path()), '--model', 'gru4rec', '-q', "
        f"'--set', 'n_epochs=1', '--set', 'layers=16', '--out', {str(tmp_path / 'm.prnn')!r}])\n"
        "print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "m.prnn").exists()


def test_eager_only_functions_are_kept_out_of_compiled_graphs_once_compiling_starts(monkeypatch):
    monkeypatch.setattr(eager, "_TARGETS", [])
    monkeypatch.setattr(eager, "_disabled", False)

    @eager.eager_only
    def plus_one(x: torch.Tensor) -> torch.Tensor:
        return x + 1

    def outer(x):
        return plus_one(x * 2) * 3

    x = torch.tensor([1.0, 2.0])
    # not yet disabled: traced into like any function, so one whole graph compiles
    assert torch.equal(torch.compile(outer, backend="eager", fullgraph=True)(x), (x * 2 + 1) * 3)
    eager.disable_compilation()
    torch.compiler.reset()
    with pytest.raises(Exception, match="disable"):  # a graph break, refused by fullgraph
        torch.compile(outer, backend="eager", fullgraph=True)(x)
    torch.compiler.reset()
    assert torch.equal(torch.compile(outer, backend="eager")(x), (x * 2 + 1) * 3)

    @eager.eager_only  # marked after compiling started: disabled at once
    def plus_two(x: torch.Tensor) -> torch.Tensor:
        return x + 2

    with pytest.raises(Exception, match="disable"):
        torch.compile(lambda x: plus_two(x) * 3, backend="eager", fullgraph=True)(x)


def test_eager_only_keeps_a_methods_binding_and_name():
    class Loss:
        scale = 2.0

        @eager.eager_only
        def value(self, x):
            """The scaled value."""
            return x * self.scale

    assert Loss().value(torch.tensor(3.0)).item() == 6.0
    assert Loss.value.__name__ == "value" and Loss.value.__doc__ == "The scaled value."
