"""Progress bars: drawn on a terminal only, never under -q."""

from __future__ import annotations

import io
import sys

from prnn.cli import main
from prnn.progress import progress_bar


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_bar_is_drawn_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress_bar(range(3), desc="work", unit="step")) == [0, 1, 2]
    assert "work" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_no_bar_when_stderr_is_redirected_or_bars_are_disabled(monkeypatch):
    log_file = io.StringIO()  # isatty() is False, as for a CI log or `2> file`
    monkeypatch.setattr(sys, "stderr", log_file)
    bar = progress_bar(desc="work", total=3, unit="step")
    bar.update(3)
    bar.close()
    assert log_file.getvalue() == ""

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress_bar(range(3), desc="work", unit="step", enabled=False)) == [0, 1, 2]
    assert terminal.getvalue() == ""


def test_cli_draws_bars_on_a_terminal_unless_quiet(monkeypatch, tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("session_id,item_id,timestamp\n1,1,1\n1,2,2\n2,2,5\n2,1,6\n")
    model = tmp_path / "pop.prnn"
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["train", str(events), "--model", "pop", "--out", str(model)]) == 0
    assert main(["evaluate", str(model), str(events), "--json", "-"]) == 0
    assert "evaluate pop" in terminal.getvalue()  # the evaluation's bar
    assert f"read {events}" in terminal.getvalue()  # an info log

    quiet = Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["-q", "train", str(events), "--model", "pop", "--out", str(model)]) == 0
    assert main(["evaluate", "-q", str(model), str(events), "--json", "-"]) == 0
    assert quiet.getvalue() == ""
