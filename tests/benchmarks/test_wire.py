"""ticker-bench's fast client against websockets' sans-I/O server: handshake, split reads, control frames."""

from __future__ import annotations

import asyncio
import json
import socket
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from ticker_bench.tally import ClientSpec, Sampler
from ticker_bench.wire import FastClient

TIMEOUT = 5.0


def ticks_message(symbol: str, seqs: list[int]) -> bytes:
    ticks = [
        {"symbol": symbol, "seq": s, "ts": 1.0 + s, "price": 10.0, "bid": 9.9, "ask": 10.1,
         "size": 100, "volume": 100 * s}
        for s in seqs
    ]  # fmt: skip
    return json.dumps({"type": "ticks", "ticks": ticks}, separators=(",", ":")).encode()


def server_bytes(server: ServerProtocol) -> bytes:
    return b"".join(server.data_to_send())


class ServerEnd:
    """websockets' sans-I/O ServerProtocol on the far end of a real socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = ServerProtocol()
        self.loop = asyncio.get_running_loop()

    async def accept(self) -> None:
        while not (events := self.ws.events_received()):
            self.ws.receive_data(await self.loop.sock_recv(self.sock, 65536))
        assert isinstance(events[0], Request)
        self.ws.send_response(self.ws.accept(events[0]))
        await self.flush()

    async def flush(self) -> None:
        await self.loop.sock_sendall(self.sock, server_bytes(self.ws))

    async def frame(self) -> Frame:
        """The next frame the client sent."""
        while not (events := self.ws.events_received()):
            self.ws.receive_data(await self.loop.sock_recv(self.sock, 65536))
        assert isinstance(events[0], Frame)
        return events[0]


async def connected_client() -> tuple[FastClient, ServerEnd]:
    client_sock, server_sock = socket.socketpair()
    server_sock.setblocking(False)
    client = FastClient("ws://bench.test/", ClientSpec(0, verified=True), Sampler(), False)
    server = ServerEnd(server_sock)
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: client, sock=client_sock)
    async with asyncio.timeout(TIMEOUT):
        await server.accept()
        await client.opened
    return client, server


async def test_fast_client_counts_ticks_answers_pings_and_closes() -> None:
    """The fast path counts ticks frames, hands a ping, fragments and close to websockets."""
    client, server = await connected_client()
    ws = server.ws
    ws.send_text(b'{"type":"hello","symbols":["AAPL"]}')
    ws.send_text(ticks_message("AAPL", [1, 2]))
    ws.send_ping(b"rtt")
    half = ticks_message("AAPL", [3, 4, 5])
    ws.send_text(half[:20], fin=False)
    ws.send_continuation(half[20:], fin=True)
    ws.send_text(b'{"type":"subscribed","symbols":["AAPL"]}')
    await server.flush()
    async with asyncio.timeout(TIMEOUT):
        assert (await client.hello)["symbols"] == ["AAPL"]
        await client.subscribed  # messages are handled in order: every tick is in
        pong = await server.frame()
    tally = client.tally
    assert (tally.ticks, tally.frames) == (5, 2)
    assert tally.last_seq == {"AAPL": 5} and tally.unexplained == tally.reordered == 0
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"rtt")
    ws.send_close(1001, "going away")
    await server.flush()
    async with asyncio.timeout(TIMEOUT):
        echoed = await server.frame()
        assert echoed.opcode is Opcode.CLOSE
        server.sock.close()
        await client.lost
    assert client.lost_code == 1001


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12))
def test_frames_split_at_any_byte_are_counted_once(cuts: list[int]) -> None:
    """However the reads cut the stream (mid-header, mid-payload), every tick is counted once."""
    server = ServerProtocol(state=State.OPEN)  # frames only: no handshake needed
    sizes = [1, 3, 40, 2, 200]  # 200 ticks: a payload over 125 bytes uses the 16-bit length
    seq = 0
    for size in sizes:
        server.send_text(ticks_message("MSFT", list(range(seq + 1, seq + size + 1))))
        seq += size
    stream = server_bytes(server)
    bounds = sorted({0, len(stream), *(c % len(stream) for c in cuts)})

    async def feed() -> FastClient:
        client = FastClient("ws://bench.test/", ClientSpec(0, verified=True), Sampler(), False)
        for start, end in pairwise(bounds):
            client.consume(stream[start:end], 0.0)
        return client

    tally = asyncio.run(feed()).tally
    assert (tally.ticks, tally.frames) == (seq, len(sizes))
    assert tally.last_seq == {"MSFT": seq} and tally.unexplained == tally.reordered == 0
