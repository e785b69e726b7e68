"""Are the dashboard's candles exact under throttling and gateway restarts? (issue 10's probe)

``python -m benchmarks.candle_probe --duration 75 --restarts 10`` starts a private
redis-server, one feed and two gateways on it (``--max-rate 0`` so a client may be
unthrottled). The dashboard's own client stack (TickerClient + MarketStore +
ClientBridge on a qasync loop, wired as MainWindow wires them) subscribes through
gateway A at max_rate 1, 4 and the dashboard's default; an independent websockets
client reads every tick through gateway B. Gateway A is killed with SIGKILL and
restarted ``--restarts`` times. At the end every complete candle of 1 s, 5 s and
1 min that each stack built is compared field by field with the candle of the full
feed. It prints one line per stack and writes the report as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

__all__ = ["main"]

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")
WIDTHS = (1.0, 5.0, 60.0)
FIELDS = ("open", "high", "low", "close", "volume", "count")
Candle = tuple[float, float, float, float, int, int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    cmd: list[str], log: Path, wait_for: bytes, timeout: float = 20.0
) -> subprocess.Popen[bytes]:
    """Start a process whose stderr (or stdout) says ``wait_for`` once it is ready."""
    out = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while wait_for not in log.read_bytes():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{cmd[0:4]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc


def reference_candles(ticks: list[dict[str, Any]], width: float) -> dict[float, Candle]:
    """Candles of every tick, aggregated the plain way (independent of ticker_desktop)."""
    from ticker_server.protocol import ts_micros

    step = round(width * 1_000_000)
    out: dict[float, list[Any]] = {}
    for tick in ticks:
        start_t = ts_micros(tick["ts"]) // step * step / 1_000_000
        price, size = tick["price"], tick["size"]
        c = out.get(start_t)
        if c is None:
            out[start_t] = [price, price, price, price, size, 1]
        else:
            c[1], c[2], c[3] = max(c[1], price), min(c[2], price), price
            c[4] += size
            c[5] += 1
    return {t: tuple(c) for t, c in out.items()}


async def read_full_feed(
    url: str, ticks: dict[str, list[dict[str, Any]]], ready: asyncio.Event
) -> None:
    """The independent reference: every tick of SYMBOLS through gateway B, unthrottled."""
    from websockets.asyncio.client import connect

    async with connect(url, max_queue=None, max_size=2**16) as ws:
        await ws.recv()  # hello
        # The same history the dashboard asks for, so long candles are comparable sooner.
        request = {"type": "subscribe", "symbols": list(SYMBOLS), "snapshot": 1000}
        await ws.send(json.dumps(request))
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "subscribed":
                ready.set()
            elif message["type"] in ("ticks", "snapshot"):
                for tick in message["ticks"]:
                    assert "merged" not in tick, "the reference must be unthrottled"
                    held = ticks[tick["symbol"]]
                    assert not held or tick["seq"] == held[-1]["seq"] + 1, "no hole, no repeat"
                    held.append(tick)


def compare(store: Any, full: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Count the stack's complete candles that differ from the full feed's."""
    result: dict[str, Any] = {}
    for width in WIDTHS:
        checked = wrong = 0
        examples: list[str] = []
        for symbol in SYMBOLS:
            series = store.get(symbol)
            ref_ticks = full[symbol]
            if (
                series is None
                or width not in series.candles
                or not ref_ticks
                or not len(series.ticks)
            ):
                continue
            ref = reference_candles(ref_ticks, width)
            candles = series.candles[width]
            first = max(float(series.ticks.ts[0]), ref_ticks[0]["ts"])
            last = min(float(series.ticks.ts[-1]), ref_ticks[-1]["ts"])
            cols = [candles.column(name) for name in ("t", *FIELDS)]
            for row in zip(*cols, strict=True):
                t = float(row[0])
                if t <= first or t + width > last:
                    continue  # not wholly seen by both sides
                checked += 1
                got = tuple(float(v) for v in row[1:])
                want = ref.get(t)
                if want is None or any(abs(a - b) > 1e-9 for a, b in zip(got, want, strict=True)):
                    wrong += 1
                    if len(examples) < 3:
                        examples.append(f"{symbol} {t:.0f}+{width:g}s: got {got}, full feed {want}")
        result[f"{width:g}s"] = {"checked": checked, "mismatched": wrong, "examples": examples}
    return result


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from ticker_desktop.bridge import ClientBridge
    from ticker_desktop.client import ClientOptions, TickerClient
    from ticker_desktop.store import MarketStore

    redis_port, port_a, port_b = free_port(), free_port(), free_port()
    broker = f"redis://127.0.0.1:{redis_port}/0"
    procs: list[subprocess.Popen[bytes]] = []
    py = [sys.executable, "-m", "ticker_server"]
    symbols = ",".join(SYMBOLS)
    gateway_cmd = [*py, "gateway", "--broker", broker, "--max-rate", "0", "--log-level", "WARNING"]
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    procs.append(start([redis, "--port", str(redis_port), "--save", "", "--appendonly", "no",
                        "--bind", "127.0.0.1"], workdir / "redis.log", b"Ready to accept"))  # fmt: skip
    procs.append(start([*py, "feed", "--broker", broker, "--symbols", symbols, "--tick-rate",
                        str(args.tick_rate), "--seed", "3"], workdir / "feed.log", b"feed running"))  # fmt: skip
    gateway_b = start([*gateway_cmd, "--port", str(port_b), "--log-level", "INFO"],
                      workdir / "gateway-b.log", b"serving ws://")  # fmt: skip
    procs.append(gateway_b)
    gateway_a = start([*gateway_cmd, "--port", str(port_a), "--log-level", "INFO"],
                      workdir / "gateway-a.log", b"serving ws://")  # fmt: skip
    full: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ready = asyncio.Event()
    reader = asyncio.create_task(read_full_feed(f"ws://127.0.0.1:{port_b}", full, ready))
    await asyncio.wait_for(ready.wait(), 10)
    stacks: dict[str, tuple[MarketStore, ClientBridge]] = {}
    for name, rate in (("max_rate 1", 1.0), ("max_rate 4", 4.0), ("dashboard default", None)):
        options = (
            ClientOptions() if rate is None else dataclasses.replace(ClientOptions(), max_rate=rate)
        )
        store = MarketStore()
        bridge = ClientBridge(TickerClient(f"ws://127.0.0.1:{port_a}", options), store)
        bridge.start()
        bridge.watch(list(SYMBOLS))
        stacks[name] = (store, bridge)
    began = time.time()
    restarts = 0
    try:
        period = args.duration / (args.restarts + 1)
        while restarts < args.restarts:
            await asyncio.sleep(max(began + (restarts + 1) * period - time.time(), 0.0))
            gateway_a.send_signal(signal.SIGKILL)
            gateway_a.wait()
            gateway_a = start([*gateway_cmd, "--port", str(port_a), "--log-level", "INFO"],
                              workdir / f"gateway-a{restarts}.log", b"serving ws://")  # fmt: skip
            restarts += 1
            print(f"[{time.time() - began:5.1f} s] gateway A killed and restarted ({restarts})",
                  file=sys.stderr)  # fmt: skip
        await asyncio.sleep(max(began + args.duration - time.time(), 0.0))
        await asyncio.sleep(args.settle)  # the last updates in flight reach both sides
    finally:
        report: dict[str, Any] = {
            "duration_s": args.duration, "restarts": restarts, "tick_rate": args.tick_rate,
            "symbols": list(SYMBOLS), "full_feed_ticks": sum(len(v) for v in full.values()),
            "stacks": {},
        }  # fmt: skip
        for name, (store, bridge) in stacks.items():
            granted = getattr(bridge.client, "granted_rate", None)
            report["stacks"][name] = {
                "conflated": store.conflated,
                "granted_rate": granted,
                "candles": compare(store, full),
            }
            await bridge.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        for proc in (gateway_a, *reversed(procs)):
            proc.send_signal(signal.SIGTERM)
        for proc in (gateway_a, *procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="candle_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=75.0, help="seconds of live data (75)")
    parser.add_argument("--restarts", type=int, default=10, help="gateway A kills (10)")
    parser.add_argument("--tick-rate", type=float, default=20.0, help="per symbol (20)")
    parser.add_argument("--settle", type=float, default=2.5, help="seconds after the last kill")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)

    import qasync
    from PySide6.QtCore import QCoreApplication

    app = QCoreApplication.instance() or QCoreApplication([])
    with tempfile.TemporaryDirectory(prefix="candle-probe-") as tmp:
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        report = loop.run_until_complete(run(args, Path(tmp)))
    bad = 0
    for name, stack in report["stacks"].items():
        cells = ", ".join(
            f"{w}: {c['mismatched']}/{c['checked']} wrong" for w, c in stack["candles"].items()
        )
        print(f"{name:18} conflated {stack['conflated']:6}  {cells}")
        for c in stack["candles"].values():
            bad += c["mismatched"]
            for example in c["examples"]:
                print(f"    {example}")
    print(f"restarts {report['restarts']}, full feed {report['full_feed_ticks']} ticks")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
