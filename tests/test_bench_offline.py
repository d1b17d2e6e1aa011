"""The MNIST benchmark, the project's main job, runs anywhere: without MNIST it says so in
one line and compares the contenders' speed on a synthetic MNIST-shaped stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from math import isfinite
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benches" / "mnist_bench.py"


def test_mnist_bench_runs_on_a_synthetic_stand_in_without_mnist(tmp_path):
    empty, out = tmp_path / "no-mnist", tmp_path / "out"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_DATA_DIR"}
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--data-dir", str(empty),
                           "--out", str(out), "--contenders", "compiled,numpy"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = [line for line in proc.stdout.splitlines() if "synthetic" in line]
    assert len(notes) == 1 and notes[0].startswith("note: MNIST not found")
    assert "FASTNN_DATA_DIR" in notes[0] and "--data-dir" in notes[0]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| fastnn compiled")]
    assert table and all(line.rstrip().endswith("| n/a |") for line in table)
    report = json.loads((out / "mnist_bench.json").read_text())
    assert report  # the report is written as with real data


def test_the_cnn_benchmark_runs_on_the_stand_in_too(tmp_path):
    empty, out = tmp_path / "no-mnist", tmp_path / "out"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_DATA_DIR"}
    proc = subprocess.run([sys.executable, str(BENCH), "--model", "cnn", "--quick",
                           "--data-dir", str(empty), "--out", str(out),
                           "--contenders", "compiled,numpy,seed"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "cnn_bench.json").read_text())
    rows = {(r["model"], r["contender"]) for r in report["results"] if not r.get("skipped")}
    assert rows == {("cnn", "compiled"), ("cnn", "numpy"), ("cnn", "seed"),
                    ("dropout", "compiled"), ("dropout", "numpy")}
    assert report["flops"]["cnn"]["gemm"] == 2000 * (2 * 288_000 + 3 * 368_640 + 3 * 2_560)
    ran = [r for r in report["results"] if not r.get("skipped")]
    assert all(isfinite(r["floor_ratio"]) and r["floor_ratio"] > 0 for r in ran)
    # Only contenders far above the floor are held to it: the compiled CNN runs a few
    # times its floor, and the --quick GEMM rate, measured on a busy machine, can be
    # low enough to put a floor above it.
    assert all(r["floor_ratio"] > 1 for r in ran if r["contender"] in ("numpy", "seed"))
