"""``python -m fastrnn bench`` on a tiny grid: the table, the JSON and the checks
that come before any timing (the timings themselves live in bench/, not here)."""

import importlib.util
import json

import numpy as np
import pytest

from fastrnn import _bench

TINY = ["--cells", "RNN,GRU", "--modes", "inference,training", "--batches", "2",
        "--hiddens", "8", "--steps", "3", "--repeats", "1", "--no-progress", "--no-scaling"]


def test_bench_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench.main(TINY + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "GEMM ceiling" in text and "NumPy SGEMM" in text and "fastrnn ms" in text
    data = json.loads(out.read_text())
    rows = data["results"]
    assert [(r["cell"], r["mode"]) for r in rows] == [
        ("RNN", "inference"), ("RNN", "training"), ("GRU", "inference"), ("GRU", "training")]
    for r in rows:
        assert r["times_s"]["fastrnn"] > 0 and r["fastrnn_gflops"] > 0
        assert r["sgemm_gflops"] > 0 and r["packed_gemm_gflops"] > 0
        assert r["fastrnn_peak_mb"] >= 0
        assert r["ceiling_gflops"] == max(r["sgemm_gflops"], r["packed_gemm_gflops"])
        # Where the host put two threads, before the row and at the run's start and
        # end: the cross-core round trip and the share of a core each gets.
        for ns in (r["round_trip_ns"], *r["run_round_trip_ns"]):
            assert (ns > 0) if r["threads"] > 1 else (ns is None)
        for share in (r["core_share"], *r["run_core_share"]):
            assert (0.2 < share < 2) if r["threads"] > 1 else (share is None)
        # The reference runs on a grid this small; its outputs matched fastrnn's.
        assert "numpy-ref" in r["times_s"] and "numpy-ref" not in r["notes"]


def test_bench_times_other_input_sizes(tmp_path, capsys):
    """--inputs: every shape at each input size (odd ones, say), an I column in the
    table and the input in the JSON."""
    out = tmp_path / "bench.json"
    args = [a for a in TINY] + ["--inputs", "3,5", "--json", str(out)]
    args[args.index("--cells") + 1] = "LSTM"
    assert _bench.main(args) == 0
    text = capsys.readouterr().out
    head = next(line for line in text.splitlines() if "fastrnn ms" in line)
    assert "inputs 3, 5" in text and " I " in head
    rows = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["input"], r["hidden"]) for r in rows] == [
        ("inference", 3, 8), ("inference", 5, 8), ("training", 3, 8), ("training", 5, 8)]


def test_bench_prints_how_the_cost_grows(tmp_path, capsys, monkeypatch):
    """The section below the table (fastrnn/_scaling.py, tested there), here on tiny
    sizes: it reaches the output and the JSON."""
    from fastrnn import _scaling
    monkeypatch.setattr(_scaling, "STEPS", (3, 6))
    monkeypatch.setattr(_scaling, "BATCHES", (2, 4))
    monkeypatch.setattr(_scaling, "MEMORY_STEPS", (300, 600))
    monkeypatch.setattr(_scaling, "THREAD_SHAPES", dict(batches=(2,), hiddens=(8,)))
    out = tmp_path / "bench.json"
    args = [a for a in TINY if a != "--no-scaling"] + ["--threads", "2", "--json", str(out)]
    assert _bench.main(args) == 0
    text = capsys.readouterr().out
    assert "How the cost grows" in text and "Threads: time on 2 threads" in text
    scaling = json.loads(out.read_text())["scaling"]
    assert [T for T, _ in scaling["steps"]] == [3, 6]
    assert len(scaling["thread_rows"]) == 4          # RNN, GRU x inference, training


def test_bench_marks_a_peer_whose_outputs_differ(monkeypatch):
    """A peer that computes something else is reported, never timed."""
    class Wrong(_bench._Fastrnn):
        name = "wrong"

        def prepare(self, layer, x, mode):
            self.last = np.zeros((x.shape[0], x.shape[1], layer.hidden_size), np.float32)
            return super().prepare(layer, x, mode)

    monkeypatch.setattr(_bench, "_available_peers", lambda threads, max_flops: [Wrong()])
    monkeypatch.setattr(_bench, "ceilings", lambda threads: {"numpy": 1.0, "packed": 1.0})
    grid = dict(cells=("LSTM",), modes=("inference",), batches=(2,), hiddens=(8,), steps=3)
    (row,) = _bench.run(grid, repeats=1, progress=False)
    assert row["notes"] == {"wrong": "MISMATCH"} and "wrong" not in row["times_s"]


def test_flops_count_the_gemms():
    # forward 2 T B G H (I + H); training three times that.
    assert _bench._flops("LSTM", "inference", 5, 2, 3, 4) == 2 * 5 * 2 * 4 * 4 * (3 + 4)
    assert _bench._flops("GRU", "training", 5, 2, 3, 4) == 3 * 2 * 5 * 2 * 3 * 4 * (3 + 4)


@pytest.mark.parametrize("argv", [["--cells", "XYZ"], ["--modes", "inference,testing"]])
def test_bench_rejects_unknown_cells_and_modes(argv, capsys):
    with pytest.raises(SystemExit):
        _bench.main(argv + ["--no-progress", "--batches", "1", "--hiddens", "8"])
    assert "unknown cell or mode" in capsys.readouterr().err


def _row(cell, mode, batch, hidden, times_ms, gflops=100.0, ceiling=200.0, sgemm=120.0):
    return dict(cell=cell, mode=mode, batch=batch, hidden=hidden, input=hidden, steps=10,
                times_s={k: v / 1e3 for k, v in times_ms.items()}, fastrnn_gflops=gflops,
                ceiling_gflops=ceiling, sgemm_gflops=sgemm, notes={})


def test_targets_count_the_rows_and_say_what_a_miss_would_take():
    """Each target against the faster peer (or PyTorch alone for training), and for
    a miss the GFLOP/s that the target time would take, or at batch 1 the rate of
    reading the recurrent weights; the reference never counts as a peer."""
    results = [
        _row("LSTM", "inference", 8, 16, {"fastrnn": 1.0, "torch": 2.0, "onnxruntime": 0.8,
                                          "numpy-ref": 50.0}),
        _row("GRU", "inference", 8, 16, {"fastrnn": 1.0, "torch": 1.0}),
        _row("LSTM", "inference", 1, 16, {"fastrnn": 1.0, "onnxruntime": 1.25}),
        _row("LSTM", "inference", 1, 1024, {"fastrnn": 1.0, "onnxruntime": 4.0}),
        _row("LSTM", "training", 8, 16, {"fastrnn": 1.0, "torch": 1.0}),
        _row("GRU", "training", 8, 16, {"fastrnn": 0.7, "torch": 1.0}),
        _row("RNN", "training", 64, 512, {"fastrnn": 0.7}, gflops=160.0),
        _row("GRU", "training", 32, 512, {"fastrnn": 0.7}, gflops=90.0),
        _row("RNN", "inference", 32, 1024, {"fastrnn": 0.7}, gflops=180.0),
    ]
    summary = {t["target"].split(" <=")[0].split(" (")[0]: t
               for t in _bench.targets(results)}
    infer = summary["inference"]
    assert (infer["held"], infer["rows"]) == (3, 4)   # the batch-1 rows count here too
    (miss,) = infer["misses"]
    assert miss["row"] == "LSTM B8 H16" and miss["peer"] == "onnxruntime"
    assert miss["ratio"] == pytest.approx(1.25)
    flops = _bench._flops("LSTM", "inference", 10, 8, 16, 16)
    assert miss["needs_gflops"] == pytest.approx(flops / 0.8e-3 / 1e9)
    assert miss["needs_share"] == pytest.approx(miss["needs_gflops"] / 200.0)

    batch1 = summary["batch-1 inference"]               # hidden 1024 is not on it
    assert (batch1["held"], batch1["rows"]) == (0, 1)
    weights = 4 * 16 * 16 * 4 * 10                      # 4 gates, float32, 10 steps
    assert batch1["misses"][0]["needs_weights_gbs"] == pytest.approx(
        weights / (0.5 * 1.25e-3) / 1e9)

    train = summary["training"]                         # no PyTorch time: not counted
    assert (train["held"], train["rows"]) == (1, 2)
    assert train["misses"][0]["row"] == "LSTM B8 H16"

    large = summary[">= 85% of the ceiling"]
    assert (large["held"], large["rows"], large["held_of_sgemm"]) == (1, 3, 2)
    assert [m["row"] for m in large["misses"]] == ["RNN B64 H512", "GRU B32 H512"]
    assert large["misses"][0]["share"] == pytest.approx(0.8)

    text = _bench.format_targets(_bench.targets(results))
    assert "1.25x onnxruntime" in text and "GB/s of weights" in text
    assert "RNN B64 H512 training: 80.0%" in text and "SGEMM: 2 of 3" in text


def test_bench_prints_the_targets(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _bench.main(TINY + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    summary = json.loads(out.read_text())["targets"]
    assert all(0 <= t["held"] <= t["rows"] for t in summary)
    if importlib.util.find_spec("torch") is not None:
        assert "Targets:" in text
        assert [t["rows"] for t in summary if t["target"].startswith("training")] == [2]
