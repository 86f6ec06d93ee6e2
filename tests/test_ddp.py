"""DDP on CPU (gloo) with two processes launched by torchrun: training, identical replicas, exact resume."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "helpers" / "train_toy.py"

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(out_dir: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(SCRIPT), "--out", str(out_dir), "--batch-size", "4", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def results(process: subprocess.Popen, out_dir: Path) -> list[dict]:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return [json.loads((out_dir / f"result_rank{rank}.json").read_text()) for rank in range(2)]


def test_ddp_trains_identical_replicas_and_resumes_exactly(tmp_path):
    # The straight run and the first half of the interrupted one run side by side.
    straight = torchrun(tmp_path / "straight", "--steps", "20")
    first_half = torchrun(tmp_path / "resumed", "--steps", "10", "--checkpoint-every", "5")
    reference = results(straight, tmp_path / "straight")
    assert reference[0]["model"] == reference[1]["model"]
    assert reference[0]["ema"] == reference[1]["ema"]
    assert math.isfinite(reference[0]["loss"])
    assert reference[0]["final_eval_loss"] < reference[0]["initial_eval_loss"]
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [5, 10, 15, 20]
    assert log[0]["epoch"] == pytest.approx(5 * 4 * 2 / 40)  # 5 steps x 4 examples x 2 ranks over 40 points

    assert results(first_half, tmp_path / "resumed")[0]["step"] == 10
    resumed = results(torchrun(tmp_path / "resumed", "--steps", "20", "--checkpoint-every", "5", "--resume"),
                      tmp_path / "resumed")
    for rank in range(2):
        assert (resumed[rank]["step"], resumed[rank]["loss_calls"]) == (20, 10)  # it continued, not restarted
        assert resumed[rank]["model"] == reference[rank]["model"]
        assert resumed[rank]["ema"] == reference[rank]["ema"]
