"""The bench's section on how cost grows (fastrnn/_scaling.py).

Only memory is asserted here: it is deterministic.  Times are for the bench to
print, never for tests to check.
"""

import pytest

from fastrnn import _scaling

CHUNK_ROWS = 512       # fastrnn/kernels/common.pxd: rows of one input projection


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_inference_memory_beyond_the_output_does_not_grow_with_T(cell):
    B = 4
    first_full_chunk = CHUNK_ROWS // B
    steps = (first_full_chunk, 8 * first_full_chunk, 32 * first_full_chunk)
    mem = dict(_scaling.memory_beyond_output(cell, B, 64, steps))
    assert mem[steps[-1]] <= mem[steps[0]] + 4096, mem
    # Below one chunk the workspace is smaller, so the measure does see sizes change.
    short = dict(_scaling.memory_beyond_output(cell, B, 64, (first_full_chunk // 8,)))
    assert short[first_full_chunk // 8] < mem[steps[0]], (short, mem)


def test_the_report_runs_and_names_its_findings():
    s = dict(cell="GRU", hidden=16,
             steps=list(zip((5, 10), _scaling.inference_times(
                 "GRU", 16, [(5, 2), (10, 2)], min_time=1e-3, repeats=1))),
             batches=list(zip((2, 4), _scaling.inference_times(
                 "GRU", 16, [(5, 2), (5, 4)], min_time=1e-3, repeats=1))),
             memory=_scaling.memory_beyond_output("GRU", 2, 16, (300, 600)), threads=2,
             thread_rows=_scaling.threads_vs_one(["RNN"], ["inference", "training"], [2],
                                                 [16], 2, T=5, min_time=1e-3, repeats=1))
    text = _scaling.format_report(s)
    assert "us per step" in text and "flat in T" in text
    assert len(s["thread_rows"]) == 2 and "RNN  train" in text
