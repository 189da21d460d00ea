"""The parity benchmark's comparison and control flow, without training anything."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def parity(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gru4rec_parity

    return gru4rec_parity


@pytest.fixture
def events(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "session_id,item_id,timestamp,split\n1,1,1,train\n1,2,2,train\n2,2,5,train\n"
        "2,1,6,train\n3,1,9,test\n3,2,10,test\n"
    )
    return path


def test_parity_is_within_one_and_a_half_percent_of_both_metrics(parity):
    def comparison(recall, mrr):
        return parity.Comparison("rsc15", recall, mrr, reference_recall=0.7, reference_mrr=0.4)

    assert comparison(0.7 * 1.0149, 0.4 * 0.9851).holds
    assert not comparison(0.7 * 1.0151, 0.4).holds
    assert not comparison(0.7, 0.4 * 0.9849).holds
    assert comparison(0.707, 0.4).recall_difference == pytest.approx(0.01)
    held, missed = comparison(0.7, 0.4), comparison(0.6, 0.4)
    assert parity.exit_status([held, held]) == 0 and parity.exit_status([held, missed]) == 1
    table = parity.parity_table([held, missed], "1,2")
    assert "| rsc15 | 1,2 | 0.7000 | 0.7000 | +0.00% |" in table and table.endswith("| NO |")


def test_without_a_checkout_it_compares_with_the_recorded_figures(
    parity, events, monkeypatch, capsys
):
    recorded_recall, recorded_mrr = parity.RECORDED["rsc15"]
    trained = []

    def prnn_scores(config, train, test, device, compile):
        trained.append((config.seed, config.n_epochs, compile, train.n_events, test.n_events))
        return recorded_recall * 1.01, recorded_mrr

    monkeypatch.setattr(parity, "prnn_scores", prnn_scores)
    assert parity.main([str(events), "--presets", "rsc15", "--seeds", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "no --reference DIR given: comparing with the reference's recorded figures" in out
    assert "docs/gru4rec.md" in out and "parity holds" in out
    assert trained == [(1, 10, None, 4, 2), (2, 10, None, 4, 2)]

    monkeypatch.setattr(parity, "prnn_scores", lambda *args: (recorded_recall * 0.98, 0.3))
    assert parity.main([str(events), "--presets", "rsc15", "--seeds", "1", "--no-compile"]) == 1
    assert "parity fails for rsc15" in capsys.readouterr().out


def test_with_a_checkout_it_trains_the_reference_with_the_same_settings(
    parity, events, monkeypatch, capsys
):
    runs = []

    def reference_scores(reference_dir, config, train, test, device):
        runs.append((reference_dir, config.seed, config.n_epochs))
        return 0.5, 0.2

    monkeypatch.setattr(parity, "prnn_scores", lambda config, *args: (0.5, 0.2 * 1.02))
    monkeypatch.setattr(parity, "reference_scores", reference_scores)
    argv = [str(events), "--presets", "rsc15", "--seeds", "3,4", "--epochs", "1"]
    assert parity.main([*argv, "--reference", "checkout"]) == 1  # MRR 2% above
    assert runs == [("checkout", 3, 1), ("checkout", 4, 1)]
    out = capsys.readouterr().out
    assert "# reference: hidasib/GRU4Rec_PyTorch_Official from checkout" in out
    assert "| rsc15 | 3,4 | 0.5000 | 0.5000 | +0.00% | 0.2040 | 0.2000 | +2.00% |" in out


def test_recorded_figures_are_for_ten_epochs_only(parity, events, capsys):
    with pytest.raises(SystemExit) as stopped:
        parity.main([str(events), "--epochs", "1"])
    assert stopped.value.code == 2
    assert "recorded figures are for 10 epochs" in capsys.readouterr().err


def test_peers_writes_one_recbole_example_per_next_item(monkeypatch, tmp_path):
    """RecBole sees exactly prnn's predictions: every next item of every sequence, with its
    history cut to the last ``max_len`` items."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import peers

    from .conftest import make_log

    log = make_log({1: ["a", "b", "c"], 2: ["d", "e"]})
    assert peers.write_recbole_examples(log, tmp_path / "x.inter", max_len=1) == 3
    rows = (tmp_path / "x.inter").read_text().splitlines()
    assert rows == [
        "session_id:token\titem_id_list:token_seq\titem_id:token",
        "s0\ta\tb",
        "s0\tb\tc",
        "s1\td\te",
    ]
    peers.write_recbole_examples(log, tmp_path / "y.inter", max_len=20)
    assert (tmp_path / "y.inter").read_text().splitlines()[2] == "s0\ta b\tc"
