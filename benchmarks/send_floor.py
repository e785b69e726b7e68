"""The machine's floor for the fan-out: CPU per ``socket.send`` of one small frame on loopback.

``python -m benchmarks.send_floor`` connects 1,000 TCP clients on 127.0.0.1 (a forked
reader pinned to core 1 drains them with epoll) and sends one 300-byte message to each,
20 and then 50 times a second (as a server flushing one frame per window would), from
a process pinned to core 0. No asyncio, no websockets, no JSON: what it prints is the
kernel's cost of a send on this machine, below which no Python server's cost per
written frame can go. Every loop is bounded (5 s per rate, 30 s in all).
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import time

__all__ = ["main"]


def _reader(port: int, clients: int, seconds: float) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    sel = selectors.EpollSelector()
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    end = time.time() + seconds
    while time.time() < end:
        for key, _ in sel.select(0.5):
            try:
                key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="send_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate (5)")
    args = parser.parse_args(argv)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(args.clients)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        try:
            _reader(port, args.clients, 3 * args.seconds + 10)
        finally:
            os._exit(0)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    conns = [listener.accept()[0] for _ in range(args.clients)]
    for conn in conns:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"x" * 300
    for rate in (20, 50):
        cpu0, wall0, sends = time.process_time(), time.time(), 0
        while time.time() - wall0 < args.seconds:
            for conn in conns:
                conn.send(message)
            sends += len(conns)
            time.sleep(1 / rate)
        cpu = time.process_time() - cpu0
        print(
            f"{rate} frames/s to {len(conns)} clients: {cpu / sends * 1e6:.2f} us CPU per send, "
            f"{cpu / (time.time() - wall0) * 100:.0f} % of a core"
        )
    for conn in conns:
        conn.close()
    os.kill(pid, 15)
    os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
