#!/usr/bin/env python3
"""Gateway memory per idle WebSocket connection.

Opens N idle WebSocket connections to one channel of a running gateway (the dev stack, or the
gateway binary), reads the resident memory of the gateway process before and after, and prints
(RSS after - RSS before) / N. Connections go to 127.0.0.1 only; every step is bounded in time.

    ci/ws-memory.py --pid PID --token TOKEN [--connections 10000] [--url ws://127.0.0.1:8001]

Needs Python's `websockets` package (python3 -m pip install websockets). Use ci/ws-memory.sh to run
it against a fresh release dev stack.
"""
import argparse
import asyncio
import time

import websockets


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_one(url: str, opened: list):
    # Small client buffers: the client's own memory is not what is measured, but it must fit.
    ws = await websockets.connect(url, max_size=2**16, ping_interval=None, max_queue=4)
    welcome = await asyncio.wait_for(ws.recv(), timeout=30)
    assert '"welcome"' in welcome, welcome
    opened.append(ws)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--url", default="ws://127.0.0.1:8001")
    parser.add_argument("--path", default="/ws/notifications")
    args = parser.parse_args()
    url = f"{args.url}{args.path}?access_token={args.token}"

    before = rss_kib(args.pid)
    opened: list = []
    started = time.monotonic()
    batch = 200
    for first in range(0, args.connections, batch):
        count = min(batch, args.connections - first)
        await asyncio.wait_for(
            asyncio.gather(*(open_one(url, opened) for _ in range(count))), timeout=120
        )
    await asyncio.sleep(3)  # let allocator and queues settle
    after = rss_kib(args.pid)
    elapsed = time.monotonic() - started
    per_connection = (after - before) * 1024 / len(opened)
    print(f"connections: {len(opened)} opened in {elapsed:.1f} s")
    print(f"gateway RSS: before {before} KiB, after {after} KiB, delta {after - before} KiB")
    print(f"memory per idle connection: {per_connection:.0f} bytes")
    await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in opened)), timeout=120)


asyncio.run(main())
