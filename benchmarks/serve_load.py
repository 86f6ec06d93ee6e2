"""Load check of the generation service (`noisecraft serve`): many clients, a bounded queue, bad requests mixed in.

Starts `python -m noisecraft.service.cli serve` as a real uvicorn process on a free port (a fresh data dir; the
tiny digits model unless --model), then `--clients` threads each submit jobs (honouring 429 + Retry-After, capped
at 1 s) and follow them to the end, while one more thread sends malformed and over-limit requests. Reports
submit latency, end-to-end latency, throughput, 429s, and fails (exit status 1) on any 5xx, any job that did not
succeed, or any bad request that was not answered 4xx. Same seed -> same bytes is checked on two jobs.

    .venv/bin/python benchmarks/serve_load.py --jobs 60 --clients 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="A model folder to serve (default: a tiny digits model, made now).")
    parser.add_argument("--params", default='{"n": 2, "steps": 2, "sampler": "euler"}', help="Job params (JSON).")
    parser.add_argument("--jobs", type=int, default=60, help="Jobs in all.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent client threads.")
    parser.add_argument("--workers", type=int, default=2, help="Server --workers.")
    parser.add_argument("--max-queue", type=int, default=16, help="Server --max-queue (small: exercises 429).")
    parser.add_argument("--device", default="cpu", help="Server --device.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up after this many seconds.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "serve_load.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    models = work / "models"
    models.mkdir()
    if args.model:
        (models / args.model.name).symlink_to(args.model.resolve())
        name = args.model.name
    else:
        from noisecraft import registry

        registry.get("image").resolve("tiny_model")(models / "digits")
        name = "digits"
    port, token = free_port(), "load-test-token"
    env = os.environ | {"NOISECRAFT_TOKEN": token}
    server = subprocess.Popen([sys.executable, "-m", "noisecraft.service.cli", "serve", "--port", str(port),
                               "--models", str(models), "--no-shipped", "--data-dir", str(work / "data"),
                               "--workers", str(args.workers), "--max-queue", str(args.max_queue),
                               "--device", args.device, "--max-upload-bytes", "10000", "--log-level", "warning"],
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{server.stdout.read()}")
            time.sleep(0.2)
        return run_load(args, base, headers, name)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


def run_load(args, base: str, headers: dict, model: str) -> int:
    params = json.loads(args.params)
    statuses: Counter = Counter()
    submit_s, end_to_end_s, states, problems = [], [], Counter(), []
    lock, counter = threading.Lock(), iter(range(args.jobs))
    finished_ids: list[tuple[int, str]] = []
    deadline = time.monotonic() + args.timeout

    def client_thread():
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None or time.monotonic() > deadline:
                    return
                seed = 1000 if index < 2 else index  # jobs 0 and 1 share a seed: same bytes expected
                start = time.monotonic()
                while True:
                    t0 = time.monotonic()
                    response = client.post("/v1/jobs", json={"model": model, "params": params, "seed": seed})
                    with lock:
                        statuses[response.status_code] += 1
                    if response.status_code != 429:
                        break
                    time.sleep(min(1.0, float(response.headers.get("retry-after", 1))))
                with lock:
                    submit_s.append(time.monotonic() - t0)
                if response.status_code != 202:
                    problems.append(f"submit {index}: {response.status_code} {response.text[:200]}")
                    continue
                job_id = response.json()["id"]
                while time.monotonic() < deadline:
                    job = client.get(f"/v1/jobs/{job_id}").json()
                    if job["state"] in ("succeeded", "failed", "cancelled", "refused"):
                        break
                    time.sleep(0.05)
                with lock:
                    end_to_end_s.append(time.monotonic() - start)
                    states[job["state"]] += 1
                    finished_ids.append((index, job_id))

    bad_answers = Counter()

    def bad_thread():
        bad = [(b'{"model": ', "application/json"), (b'{"model": "nope"}', "application/json"),
               (json.dumps({"model": model, "params": {"steps": 0}}).encode(), "application/json"),
               (json.dumps({"model": model, "params": {"what": 1}}).encode(), "application/json"),
               (json.dumps({"model": model, "seed": -5}).encode(), "application/json"),
               (b"x" * (40 * 1024 * 1024), "application/json")]
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            for _ in range(5):
                for body, kind in bad:
                    response = client.post("/v1/jobs", content=body, headers={"content-type": kind})
                    bad_answers[response.status_code] += 1
                for path in ("/v1/jobs/../../etc/passwd", "/v1/jobs/abc", "/v1/jobs/" + "0" * 32 + "/results/0"):
                    bad_answers[client.get(path).status_code] += 1
                bad_answers[httpx.get(f"{base}/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=client_thread) for _ in range(args.clients)] + [threading.Thread(target=bad_thread)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start

    same_seed = sorted(finished_ids)[:2]
    identical = None
    if len(same_seed) == 2 and same_seed[0][0] == 0 and same_seed[1][0] == 1:
        with httpx.Client(base_url=base, headers=headers) as client:
            files = [[client.get(r["url"]).content for r in client.get(f"/v1/jobs/{job_id}").json()["results"]]
                     for _, job_id in same_seed]
        identical = files[0] == files[1] and bool(files[0])

    five_xx = sum(count for status, count in (statuses + bad_answers).items() if status >= 500)
    bad_not_4xx = sum(count for status, count in bad_answers.items() if not 400 <= status < 500)
    summary = {
        "model": model, "params": params, "jobs": args.jobs, "clients": args.clients, "workers": args.workers,
        "max_queue": args.max_queue, "wall_s": round(wall, 2), "jobs_per_s": round(sum(states.values()) / wall, 2),
        "submit_ms_p50": round(1000 * percentile(submit_s, 0.5), 1),
        "submit_ms_p95": round(1000 * percentile(submit_s, 0.95), 1),
        "end_to_end_s_p50": round(percentile(end_to_end_s, 0.5), 2),
        "end_to_end_s_p95": round(percentile(end_to_end_s, 0.95), 2),
        "submit_statuses": dict(statuses), "bad_request_statuses": dict(bad_answers), "final_states": dict(states),
        "five_xx": five_xx, "bad_requests_not_4xx": bad_not_4xx, "same_seed_same_bytes": identical,
        "problems": problems[:10],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    ok = (five_xx == 0 and bad_not_4xx == 0 and states.get("succeeded", 0) == args.jobs and identical is not False
          and not problems)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
