"""The examples run (``--quick``) and reach their stated targets, and the PyTorch
twin trained from the same weights on the same batches ends close to fastrnn.

The examples run on one thread: the tests check results, not speed, and one
thread keeps their time steady on a busy machine.
"""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^(fastrnn|torch)\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)\s*$", re.M)


EXAMPLES = {"text_classifier.py": (), "char_lm.py": (),
            "timeseries_regressor.py": ("--plot", "{tmp}/prediction.png")}


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory):
    """All three examples started at once (they are single-threaded and seeded, so
    running side by side changes their times, not their results)."""
    tmp = tmp_path_factory.mktemp("examples")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    runs = {}
    for name, args in EXAMPLES.items():
        command = [sys.executable, os.path.join(ROOT, "examples", name), "--quick",
                   "--threads", "1", *(a.format(tmp=tmp) for a in args)]
        runs[name] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
    yield runs, tmp
    for process in runs.values():
        if process.poll() is None:
            process.kill()


def finished(example_runs, name):
    """(stdout, rows) of an example that exited 0 and reached its target."""
    runs, _ = example_runs
    stdout, stderr = runs[name].communicate(timeout=300)
    assert runs[name].returncode == 0, stderr[-3000:]
    rows = {m.group(1): tuple(float(v) for v in m.groups()[1:])
            for m in ROW.finditer(stdout)}
    assert set(rows) == {"fastrnn", "torch"}, stdout
    assert re.search(r"^time per epoch, fastrnn / torch: [\d.]+$", stdout, re.M)
    assert re.search(r"^target .*: reached$", stdout, re.M), stdout
    return stdout, rows


def assert_twins_agree(rows, rel):
    """Both frameworks' validation loss, within ``rel`` of each other."""
    fast, slow = rows["fastrnn"][1], rows["torch"][1]
    assert abs(fast - slow) <= rel * max(fast, slow), rows


def test_text_classifier(example_runs):
    _, rows = finished(example_runs, "text_classifier.py")
    assert rows["fastrnn"][2] >= 0.9 and rows["torch"][2] >= 0.9
    assert abs(rows["fastrnn"][2] - rows["torch"][2]) <= 0.02


def test_timeseries_regressor(example_runs):
    stdout, rows = finished(example_runs, "timeseries_regressor.py")
    assert rows["fastrnn"][1] <= 0.03
    assert_twins_agree(rows, 0.05)
    if "matplotlib is not installed" not in stdout:
        plot = example_runs[1] / "prediction.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_char_lm(example_runs):
    stdout, rows = finished(example_runs, "char_lm.py")
    assert rows["fastrnn"][1] <= 2.6
    assert_twins_agree(rows, 0.02)
    sample = stdout.split("sample:\n", 1)[1]
    assert sample.startswith("def ") and len(sample) > 150
