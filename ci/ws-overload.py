#!/usr/bin/env python3
"""More WebSocket connections than a gateway may hold, from several client processes.

Each worker process opens its share of the connections in batches and holds the ones welcomed;
every attempt ends as welcomed, refused with 503 `too_many_connections` (the connection cap), or
something else (counted with its reason). Meanwhile the main process probes the gateway's health
port every 250 ms and records failed probes and the longest time without a good answer. Then
every connection is closed.

    ci/ws-overload.py --token TOKEN [--connections 20500] [--processes 2]
                      [--url ws://127.0.0.1:8001] [--health http://127.0.0.1:8002]

Prints a summary and exits 1 when an attempt ended otherwise than welcomed or refused with 503,
when no attempt was refused (the cap was never reached), or when a health probe failed. Traffic
goes to 127.0.0.1 only; every step is bounded in time. Use ci/ws-overload.sh to run it against a
fresh release dev stack with its default configuration.
"""
import argparse
import asyncio
import json
import multiprocessing
import time
import urllib.request

import websockets


async def attempt(url: str, held: list, outcomes: dict):
    try:
        ws = await asyncio.wait_for(
            websockets.connect(url, max_size=2**16, ping_interval=None, max_queue=4), timeout=60
        )
    except websockets.exceptions.InvalidStatus as error:
        response = error.response
        body = response.body.decode(errors="replace") if response.body else ""
        if response.status_code == 503 and "too_many_connections" in body:
            outcomes["refused_503"] += 1
        else:
            key = f"status {response.status_code}: {body[:80]}"
            outcomes["other"][key] = outcomes["other"].get(key, 0) + 1
        return
    except Exception as error:  # noqa: BLE001 - every other ending is counted by its kind
        key = f"{type(error).__name__}: {error}"[:120]
        outcomes["other"][key] = outcomes["other"].get(key, 0) + 1
        return
    try:
        welcome = await asyncio.wait_for(ws.recv(), timeout=60)
        if '"welcome"' in welcome:
            outcomes["welcomed"] += 1
            held.append(ws)
            return
        key = f"first frame not a welcome: {welcome[:80]}"
    except Exception as error:  # noqa: BLE001
        key = f"after the upgrade, {type(error).__name__}: {error}"[:120]
    outcomes["other"][key] = outcomes["other"].get(key, 0) + 1
    await ws.close()


def worker(url: str, count: int, results, stop):
    async def run():
        held: list = []
        outcomes = {"welcomed": 0, "refused_503": 0, "other": {}}
        batch = 250
        for first in range(0, count, batch):
            size = min(batch, count - first)
            await asyncio.wait_for(
                asyncio.gather(*(attempt(url, held, outcomes) for _ in range(size))), timeout=300
            )
        results.put(outcomes)
        # Hold until the main process has probed the gateway at its fullest.
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for ws in held), return_exceptions=True), timeout=300
        )

    asyncio.run(run())


def probe(health: str) -> bool:
    try:
        with urllib.request.urlopen(f"{health}/health/live", timeout=2) as answer:
            return answer.status == 200
    except Exception:  # noqa: BLE001 - any failure is a failed probe
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=20_500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--url", default="ws://127.0.0.1:8001")
    parser.add_argument("--path", default="/ws/notifications")
    parser.add_argument("--health", default="http://127.0.0.1:8002")
    args = parser.parse_args()
    url = f"{args.url}{args.path}?access_token={args.token}"

    results = multiprocessing.Queue()
    stop = multiprocessing.Event()
    shares = [args.connections // args.processes] * args.processes
    shares[0] += args.connections - sum(shares)
    workers = [
        multiprocessing.Process(target=worker, args=(url, share, results, stop)) for share in shares
    ]
    started = time.monotonic()
    for process in workers:
        process.start()

    reports, probes, failed_probes = [], 0, 0
    last_good, longest_gap = time.monotonic(), 0.0
    deadline = started + 900
    while len(reports) < len(workers) or probes < 8:
        if time.monotonic() > deadline:
            raise SystemExit("timed out after 900 s")
        probes += 1
        if probe(args.health):
            last_good = time.monotonic()
        else:
            failed_probes += 1
        longest_gap = max(longest_gap, time.monotonic() - last_good)
        while not results.empty():
            reports.append(results.get())
            if len(reports) == len(workers):
                probes = 0  # eight more probes with every connection held
        time.sleep(0.25)
    stop.set()
    for process in workers:
        process.join(timeout=300)

    summary = {"offered": args.connections, "welcomed": 0, "refused_503": 0, "other": {}}
    for report in reports:
        summary["welcomed"] += report["welcomed"]
        summary["refused_503"] += report["refused_503"]
        for key, count in report["other"].items():
            summary["other"][key] = summary["other"].get(key, 0) + count
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["health_probes_failed"] = failed_probes
    summary["longest_health_gap_s"] = round(longest_gap, 2)
    print(json.dumps(summary, indent=2))
    ok = (
        not summary["other"]
        and summary["refused_503"] > 0
        and summary["welcomed"] + summary["refused_503"] == args.connections
        and failed_probes == 0
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
