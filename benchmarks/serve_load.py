"""Load check of the generation service (`noisecraft serve`): many clients, a bounded queue, bad requests mixed in.

Starts `python -m noisecraft.service.cli serve` as a real uvicorn process on a free port (a fresh data dir; the
tiny digits model unless --model: a folder or a shipped model's name; `shipped` = shapes_t2i, the shipped
text-to-image model), then `--clients`
threads each submit jobs (honouring 429 + Retry-After, capped at 1 s) and follow them to the end (polling every
`--poll` s), while one more thread sends malformed and over-limit requests. Clients stop submitting after `--jobs`
jobs or `--duration` seconds, whichever comes first; accepted jobs are then followed to their end. Reports submit
latency, queue wait, run time and end-to-end latency percentiles, throughput (jobs/s and items/s), 429s, checks
that every accepted job succeeded with every result file downloadable (zero lost), and fails (exit status 1) on
any 5xx, any job that did not succeed, a missing result, or any bad request that was not answered 4xx. Same seed
-> same bytes is checked on two jobs.

`--direct K` also times K calls of the same pipeline in this process with the same params and batch (K/2 before
the load, K/2 after, to average out a shared machine), and reports the service's items/s over the direct items/s.

    .venv/bin/python benchmarks/serve_load.py --jobs 60 --clients 8 --workers 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py --model shipped --clients 50 --workers 1 \
        --duration 150 --jobs 1000 --max-queue 8 --direct 4 \
        --params '{"prompt": "a red circle", "n": 4, "steps": 6, "sampler": "euler"}'
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


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="A model folder or a shipped model's name ('shipped': shapes_t2i); "
                                        "default: a tiny digits model, made now.")
    parser.add_argument("--params", default='{"n": 2, "steps": 2, "sampler": "euler"}', help="Job params (JSON).")
    parser.add_argument("--jobs", type=int, default=60, help="Jobs in all.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent client threads.")
    parser.add_argument("--workers", type=int, default=2, help="Server --workers.")
    parser.add_argument("--max-queue", type=int, default=16, help="Server --max-queue (small: exercises 429).")
    parser.add_argument("--device", default="cpu", help="Server --device.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up after this many seconds.")
    parser.add_argument("--worker-processes", type=int, default=0,
                        help="Run jobs in this many `noisecraft worker` processes (each with --workers threads) "
                             "instead of threads inside the API process.")
    parser.add_argument("--duration", type=float, default=None, help="Stop submitting after this many seconds.")
    parser.add_argument("--poll", type=float, default=0.05, help="Seconds between a client's status polls.")
    parser.add_argument("--direct", type=int, default=0,
                        help="Also time this many direct pipeline calls with the same params (half before, half "
                             "after the load) and report the service's items/s over the direct items/s.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "serve_load.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve_load_"))
    models = work / "models"
    models.mkdir()
    from noisecraft.service.models import shipped_model_dirs

    shipped = {p.name: p for p in shipped_model_dirs()}
    if args.model == "shipped":
        args.model = "shapes_t2i"
    if args.model in shipped and not Path(args.model).exists():
        args.model = str(shipped[args.model])  # a shipped model by name
    if args.model:
        model_dir = Path(args.model)
        (models / model_dir.name).symlink_to(model_dir.resolve())
        name = model_dir.name
    else:
        from noisecraft import registry

        registry.get("image").resolve("tiny_model")(models / "digits")
        name = "digits"
    port, token = free_port(), "load-test-token"
    env = os.environ | {"NOISECRAFT_TOKEN": token}
    log = (work / "server.log").open("w")  # a file, not a pipe nobody reads (a full pipe would block the server)
    server = subprocess.Popen([sys.executable, "-m", "noisecraft.service.cli", "serve", "--port", str(port),
                               "--models", str(models), "--no-shipped", "--data-dir", str(work / "data"),
                               "--workers", str(0 if args.worker_processes else args.workers),
                               "--max-queue", str(args.max_queue),
                               "--device", args.device, "--max-upload-bytes", "10000", "--log-level", "warning"],
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    # separate worker processes (the API process then only answers HTTP): `noisecraft worker` on the same store
    workers = [subprocess.Popen([sys.executable, "-m", "noisecraft.service.cli", "worker", "--data-dir",
                                 str(work / "data"), "--device", args.device, "--threads", str(args.workers),
                                 "--poll", "0.05"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
               for _ in range(args.worker_processes)]
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
                raise SystemExit(f"the server did not start:\n{(work / 'server.log').read_text()}")
            time.sleep(0.2)
        warm_up(base, headers, name, json.loads(args.params))
        direct = DirectTimer(models / name, json.loads(args.params), args.direct)
        direct.run(args.direct // 2 + args.direct % 2)
        code = run_load(args, base, headers, name, direct)
        return code
    finally:
        for worker in workers:
            worker.terminate()
        server.terminate()
        for process in (*workers, server):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work, ignore_errors=True)


def warm_up(base: str, headers: dict, model: str, params: dict) -> None:
    """One job before the clock starts: the server loads the model and the safety examples on first use."""
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        response = client.post("/v1/jobs", json={"model": model, "params": params, "seed": 1})
        if response.status_code != 202:
            raise SystemExit(f"warm-up job refused: {response.status_code} {response.text[:300]}")
        while client.get(f"/v1/jobs/{response.json()['id']}").json()["state"] in ("queued", "running"):
            time.sleep(0.2)


class DirectTimer:
    """The same pipeline called in this process with the same params: the service's yardstick."""

    def __init__(self, model_dir: Path, params: dict, calls: int):
        self.seconds, self.items, self.pipeline = 0.0, 0, None
        if calls:
            import noisecraft

            self.pipeline = noisecraft.load(model_dir)  # safety on, like the service
            self.params = params
            self.pipeline.generate(params, seed=0)  # warm-up (the text encoder, the safety examples)

    def run(self, calls: int) -> None:
        for i in range(calls if self.pipeline is not None else 0):
            start = time.perf_counter()
            generation = self.pipeline.generate(self.params, seed=10_000 + i)
            self.seconds += time.perf_counter() - start
            self.items += len(generation.items)

    def items_per_s(self) -> float | None:
        return round(self.items / self.seconds, 4) if self.seconds else None


def run_load(args, base: str, headers: dict, model: str, direct: DirectTimer) -> int:
    params = json.loads(args.params)
    statuses: Counter = Counter()
    submit_s, end_to_end_s, states, problems = [], [], Counter(), []
    lock, counter = threading.Lock(), iter(range(args.jobs))
    finished_ids: list[tuple[int, str]] = []
    deadline = time.monotonic() + args.timeout
    stop_submitting = time.monotonic() + (args.duration or args.timeout)
    queue_wait_s, run_s, items, finished_at, missing = [], [], [0], [], []

    def client_thread():
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None or time.monotonic() > min(deadline, stop_submitting):
                    return
                seed = 1000 if index < 2 else index  # jobs 0 and 1 share a seed: same bytes expected
                start = time.monotonic()
                while True:
                    t0 = time.monotonic()
                    response = client.post("/v1/jobs", json={"model": model, "params": params, "seed": seed})
                    with lock:
                        statuses[response.status_code] += 1
                    if response.status_code != 429 or time.monotonic() > stop_submitting:
                        break
                    time.sleep(min(1.0, float(response.headers.get("retry-after", 1))))
                if response.status_code == 429:
                    continue  # the submitting time ended while the queue was full: not an accepted job
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
                    time.sleep(args.poll)
                present = [client.get(r["url"]).status_code == 200 for r in job.get("results", [])]
                with lock:
                    end_to_end_s.append(time.monotonic() - start)
                    finished_at.append(time.monotonic())
                    states[job["state"]] += 1
                    finished_ids.append((index, job_id))
                    if job["state"] == "succeeded":
                        times = job["timings"]
                        queue_wait_s.append(_seconds(times["started_at"]) - _seconds(times["queued_at"]))
                        run_s.append(times["wall_seconds"])
                        items[0] += len(job["parameters"].get("safety", {}).get("kept", [])) or \
                            job["parameters"].get("n", job["parameters"].get("rows", 1))
                        if not present or not all(present):
                            missing.append(job_id)

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
    wall = (max(finished_at) if finished_at else time.monotonic()) - start
    direct.run(args.direct // 2)

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
        "queue_wait_s_p50": round(percentile(queue_wait_s, 0.5), 2),
        "queue_wait_s_p95": round(percentile(queue_wait_s, 0.95), 2),
        "run_s_p50": round(percentile(run_s, 0.5), 2), "run_s_p95": round(percentile(run_s, 0.95), 2),
        "end_to_end_s_p50": round(percentile(end_to_end_s, 0.5), 2),
        "end_to_end_s_p95": round(percentile(end_to_end_s, 0.95), 2),
        "items": items[0], "items_per_s": round(items[0] / wall, 4), "accepted": len(submit_s),
        "missing_results": len(missing), "duration_s": args.duration, "poll_s": args.poll,
        "direct_items_per_s": direct.items_per_s(), "direct_calls": args.direct,
        "service_over_direct": round(items[0] / wall / direct.items_per_s(), 3) if direct.items_per_s() else None,
        "submit_statuses": dict(statuses), "bad_request_statuses": dict(bad_answers), "final_states": dict(states),
        "five_xx": five_xx, "bad_requests_not_4xx": bad_not_4xx, "same_seed_same_bytes": identical,
        "problems": problems[:10],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    ok = (five_xx == 0 and bad_not_4xx == 0 and states.get("succeeded", 0) == len(submit_s) and not missing
          and identical is not False and not problems and (args.duration or len(submit_s) == args.jobs))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
