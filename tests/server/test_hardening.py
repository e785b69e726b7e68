"""Security, limits, resume and operations: each default has a test that can fail."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from ticker_server.app import TickerServer
from ticker_server.service import AUTH_BURST, AUTH_RATE

from ..servers import SpawnServer
from .conftest import MS, TIMEOUT, PeerFactory, ServerFactory, until
from .test_gateway import live_ticks


async def closed_with(ws: Any) -> int | None:
    """Read until the connection closes; return the close code."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    code: int | None = ws.close_code
    return code


def http_get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


# -- security -------------------------------------------------------------------------


async def test_token_required_when_configured(make_server: ServerFactory) -> None:
    """With --token, a missing or wrong token gets HTTP 401 before the upgrade; header and query both work."""
    server = await make_server(tokens=("s3cret", "other"))
    for url, headers in [(server.url, None), (server.url, {"Authorization": "Bearer wrong"})]:
        with pytest.raises(InvalidStatus) as info:
            await connect(url, additional_headers=headers)
        assert info.value.response.status_code == 401
    async with connect(server.url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
    async with connect(server.url + "/?token=other") as ws:
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_tokens_never_logged(spawn_server: SpawnServer) -> None:
    """Even at DEBUG, the server's log holds neither a header token nor a query token."""
    server = await spawn_server(
        "--port",
        "0",
        "--token",
        "hunter2-header",
        "--token",
        "hunter2-query",
        "--log-level",
        "DEBUG",
    )
    url = server.url
    async with connect(url, additional_headers={"Authorization": "Bearer hunter2-header"}) as ws:
        await ws.recv()
    async with connect(url + "/?token=hunter2-query") as ws:
        await ws.recv()
    with pytest.raises(InvalidStatus):
        await connect(url + "/?token=hunter2-wrong")
    assert await server.stop() == 0
    log = server.text()
    assert "connect" in log and "hunter2" not in log


async def test_tls_serves_wss(make_server: ServerFactory, tmp_path: Any) -> None:
    """With a certificate and key the server speaks wss://; a client trusting the CA connects, others fail."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    server = await make_server(certfile=str(certfile), keyfile=str(keyfile))
    assert server.url.startswith("wss://")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with connect(server.url, ssl=context) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
    with pytest.raises(ssl.SSLError):
        await connect(server.url, ssl=ssl.create_default_context())


async def test_origin_allowlist(make_server: ServerFactory) -> None:
    """With --allow-origin, another Origin gets 403; the listed one and a client sending none connect."""
    server = await make_server(allow_origins=("https://desk.example",))
    with pytest.raises(InvalidStatus) as info:
        await connect(server.url, origin="https://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403
    async with connect(server.url, origin="https://desk.example") as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "hello"
    async with connect(server.url) as ws:  # the desktop client and other non-browsers
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_require_origin_refuses_clients_without_one(make_server: ServerFactory) -> None:
    """With --require-origin as well, a client that sends no Origin gets 403 too."""
    server = await make_server(allow_origins=("https://desk.example",), require_origin=True)
    with pytest.raises(InvalidStatus) as info:
        await connect(server.url)
    assert info.value.response.status_code == 403
    async with connect(server.url, origin="https://desk.example") as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["type"] == "hello"


def http_get_with(url: str, token: str | None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def test_token_guards_metrics_and_healthz_details(make_server: ServerFactory) -> None:
    """With --token, /metrics needs it; /healthz tells a stranger only the status, the token holder the counts."""
    server = await make_server(tokens=("s3cret",))
    base = server.url.replace("ws://", "http://")
    status, _, _ = await asyncio.to_thread(http_get_with, base + "/metrics", None)
    assert status == 401
    status, _, body = await asyncio.to_thread(http_get_with, base + "/metrics", "s3cret")
    assert status == 200 and b"ticker_connections" in body
    status, _, body = await asyncio.to_thread(http_get_with, base + "/healthz", None)
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, _, body = await asyncio.to_thread(http_get_with, base + "/healthz", "s3cret")
    assert status == 200 and {"connections", "symbols", "epoch", "uptime"} <= set(json.loads(body))
    status, _, _ = await asyncio.to_thread(http_get_with, base + "/healthz", "wrong")
    assert status == 401


async def test_failed_tokens_are_logged_with_the_peer_and_slowed_down(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Each 401 names the peer; after five from one address even the right token gets 429 until it waits."""
    server = await make_server(tokens=("s3cret",))
    with caplog.at_level(logging.WARNING, "ticker_server.service"):
        for attempt in range(AUTH_BURST):
            with pytest.raises(InvalidStatus) as info:
                await connect(
                    server.url, additional_headers={"Authorization": f"Bearer g{attempt}"}
                )
            assert info.value.response.status_code == 401
        for token in ("guess", "s3cret"):
            with pytest.raises(InvalidStatus) as info:
                await connect(server.url, additional_headers={"Authorization": f"Bearer {token}"})
            assert info.value.response.status_code == 429
            assert 0 < int(info.value.response.headers["Retry-After"]) <= 1 / AUTH_RATE
    refusals = [r.getMessage() for r in caplog.records if "refused 127.0.0.1" in r.getMessage()]
    assert len(refusals) == AUTH_BURST and "invalid token" in refusals[0]
    assert any("slowing down 127.0.0.1" in r.getMessage() for r in caplog.records)
    assert not any("g0" in r.getMessage() or "s3cret" in r.getMessage() for r in caplog.records)


async def test_compression_off_by_default_and_on_by_flag(make_server: ServerFactory) -> None:
    """permessage-deflate is not negotiated unless --compression is given."""
    plain = await make_server()
    async with connect(plain.url) as ws:
        assert ws.response is not None and "Sec-WebSocket-Extensions" not in ws.response.headers
    deflate = await make_server(compression=True)
    async with connect(deflate.url) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")


async def test_compressed_client_gets_ticks_beside_plain_ones(make_server: ServerFactory) -> None:
    """With --compression, a deflate client and a plain one in the same group both get valid ticks."""
    server = await make_server(compression=True, tick_rate=50.0)
    async with (
        connect(server.url) as deflate,
        connect(server.url, compression=None) as plain,
    ):
        for ws in (deflate, plain):
            await ws.recv()
            await ws.send(json.dumps({"type": "subscribe", "symbols": ["AAPL", "MSFT"]}))
        assert deflate.protocol.extensions and not plain.protocol.extensions
        for ws in (deflate, plain):
            seqs: dict[str, list[int]] = {"AAPL": [], "MSFT": []}
            async with asyncio.timeout(TIMEOUT):
                while min(len(v) for v in seqs.values()) < 10:
                    message = json.loads(await ws.recv())
                    for tick in message.get("ticks", []) if message["type"] == "ticks" else []:
                        seqs[tick["symbol"]].append(tick["seq"])
            for symbol_seqs in seqs.values():  # seqs count per symbol
                assert all(a < b for a, b in itertools.pairwise(symbol_seqs))


# -- limits ----------------------------------------------------------------------------


async def test_invalid_utf8_closes_1007(server: TickerServer) -> None:
    """A text frame that is not UTF-8 closes with 1007."""
    async with connect(server.url) as ws:
        await ws.recv()
        # Bypass the client's own encoding: put raw bytes in a text frame.
        ws.protocol.send_text(b'{"type":"ping","x":"\xff\xfe"}')
        ws.send_data()
        assert await closed_with(ws) == 1007


async def test_fragmented_request_is_assembled(server: TickerServer) -> None:
    """A request sent as several fragments is answered like one sent whole."""
    async with connect(server.url) as ws:
        await ws.recv()
        await ws.send(['{"type":"subscribe",', '"symbols":["AAPL"],', '"id":"frag"}'])
        while (reply := json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))[
            "type"
        ] != "subscribed":
            pass
        assert reply == {"type": "subscribed", "symbols": ["AAPL"], "id": "frag", "max_rate": 0.0}


async def test_invalid_utf8_across_fragments_closes_1007(server: TickerServer) -> None:
    """A character split across fragments is fine; bytes that are not UTF-8 once joined close with 1007."""
    async with connect(server.url) as ws:
        await ws.recv()
        euro = "€".encode()  # three bytes, split between two fragments
        ws.protocol.send_text(b'{"type":"ping","id":"' + euro[:1], fin=False)
        ws.protocol.send_continuation(euro[1:] + b'"}', fin=True)
        ws.send_data()
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["id"] == "€"
        ws.protocol.send_text(b'{"type":"ping","id":"\xe2', fin=False)
        ws.protocol.send_continuation(b'\xff"}', fin=True)
        ws.send_data()
        assert await closed_with(ws) == 1007


async def test_request_rate_limit(make_server: ServerFactory, make_peer: PeerFactory) -> None:
    """Requests past the burst get rate_limited errors; the connection stays up."""
    server = await make_server(request_rate=5.0, request_burst=10.0)
    peer = await make_peer(server.url)
    for i in range(30):
        await peer.send(type="ping", id=i)
    replies = [await peer.recv() for _ in range(30)]
    pongs = [r for r in replies if r.type == "pong"]
    limited = [r for r in replies if r.type == "error" and r.code == "rate_limited"]
    assert 10 <= len(pongs) < 20 and len(pongs) + len(limited) == 30


async def test_sustained_abuse_closes_1008(make_server: ServerFactory) -> None:
    """A client that keeps sending far past its limit is closed with 1008."""
    server = await make_server(request_rate=5.0, request_burst=10.0)
    async with connect(server.url, max_queue=None) as ws:
        await ws.recv()
        for _ in range(150):
            await ws.send('{"type":"ping"}')
        assert await closed_with(ws) == 1008


async def test_max_connections_503(make_server: ServerFactory, make_peer: PeerFactory) -> None:
    """Beyond --max-connections the upgrade gets HTTP 503."""
    server = await make_server(max_connections=2)
    await make_peer(server.url)
    await make_peer(server.url)
    with pytest.raises(InvalidStatus) as info:
        await connect(server.url)
    assert info.value.response.status_code == 503


async def test_handshake_timeout(make_server: ServerFactory) -> None:
    """A TCP connection that never completes the handshake is dropped after open_timeout."""
    server = await make_server(open_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert data == b""  # closed by the server without a response
    writer.close()


async def test_unresponsive_client_dropped_by_ping_timeout(make_server: ServerFactory) -> None:
    """A client that stops answering pings is dropped within ping interval plus timeout."""
    server = await make_server(ping_interval=0.2, ping_timeout=0.2)
    gateway = server.gateway
    assert gateway is not None
    ws = await connect(server.url, ping_interval=None)
    await ws.recv()
    ws.transport.pause_reading()  # no reads, so no pongs
    loop = asyncio.get_running_loop()
    start = loop.time()
    [client] = gateway.clients
    # Closing: nothing more is written; the socket itself goes after close_timeout.
    await until(gateway, lambda: client.closing)
    assert client.connection is not None and not client.connection.is_open
    assert loop.time() - start < 200 * MS + 200 * MS + 500 * MS
    ws.transport.abort()


async def test_responsive_client_survives_keepalive(make_server: ServerFactory) -> None:
    """A client that answers pings (every library does, by itself) stays connected ping after ping."""
    server = await make_server(ping_interval=0.1, ping_timeout=0.1)
    gateway = server.gateway
    assert gateway is not None
    async with connect(server.url, ping_interval=None) as ws:
        await ws.recv()
        [client] = gateway.clients
        conn = client.connection
        assert conn is not None
        pongs: set[float] = set()
        async with asyncio.timeout(TIMEOUT):
            while len(pongs) < 5:  # polled: pongs expose no event
                if conn.pong_at:
                    pongs.add(conn.pong_at)
                await asyncio.sleep(0.02)
        # Five round trips over at least four ping intervals, each within the 0.1 s timeout.
        assert max(pongs) - min(pongs) >= 4 * 0.1
        assert ws.protocol.state is State.OPEN and conn.protocol.state is State.OPEN


# -- resume ------------------------------------------------------------------------------


async def test_resume_since_sends_exactly_the_gap(
    server: TickerServer, make_peer: PeerFactory
) -> None:
    """A reconnecting client that sends since gets exactly the ticks it missed, then live ones: no hole, no repeat."""
    first = await make_peer(server.url)
    await first.send(type="subscribe", symbols=["AAPL"])
    await first.expect("subscribed")
    held = (await live_ticks(first, 3))[-1].seq
    await first.ws.close()
    watcher = await make_peer(server.url)
    await watcher.send(type="subscribe", symbols=["AAPL"])
    await watcher.expect("subscribed")
    await live_ticks(watcher, 10)  # the feed moved on while the first client was away
    again = await make_peer(server.url)
    await again.send(type="subscribe", symbols=["AAPL"], since={"AAPL": held}, snapshot=3)
    await again.expect("subscribed")
    gap = await again.expect("snapshot")
    seqs = [t.seq for t in gap.ticks]
    assert seqs[0] == held + 1 and seqs == list(range(held + 1, held + 1 + len(seqs)))
    assert len(seqs) > 3, "the gap, not a 3-tick snapshot"
    live = await live_ticks(again, 3)
    assert live[0].seq == seqs[-1] + 1 and live[0].merged is None


async def test_resume_beyond_history_falls_back_to_snapshot(
    make_server: ServerFactory, make_peer: PeerFactory
) -> None:
    """When the gap is no longer held, the client gets a normal snapshot instead."""
    server = await make_server(history=5)
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["MSFT"])
    await peer.expect("subscribed")
    await live_ticks(peer, 12)
    again = await make_peer(server.url)
    await again.send(type="subscribe", symbols=["MSFT"], since={"MSFT": 1}, snapshot=4)
    await again.expect("subscribed")
    snap = await again.expect("snapshot")
    assert len(snap.ticks) == 4 and snap.ticks[0].seq > 2


# -- operations -------------------------------------------------------------------------------


async def test_healthz_and_metrics(server: TickerServer, make_peer: PeerFactory) -> None:
    """/healthz answers JSON with status, uptime, connections and symbols; /metrics is Prometheus text."""
    peer = await make_peer(server.url)
    await peer.send(type="subscribe", symbols=["AAPL", "NOPE"])
    await live_ticks(peer, 5)
    base = server.url.replace("ws://", "http://")
    status, ctype, body = await asyncio.to_thread(http_get, base + "/healthz")
    health = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert health["status"] == "ok" and health["connections"] == 1 and health["symbols"] >= 15
    assert health["uptime"] > 0
    status, ctype, body = await asyncio.to_thread(http_get, base + "/metrics")
    text = body.decode()
    assert status == 200 and ctype.startswith("text/plain")
    for name in [
        "ticker_connections 1.0",
        "ticker_subscriptions 1.0",
        "ticker_ticks_generated_total",
        "ticker_ticks_delivered_total",
        "ticker_ticks_conflated_total",
        "ticker_frames_sent_total",
        "ticker_bytes_sent_total",
        "ticker_slow_consumer_closes_total 0.0",
        'ticker_errors_total{code="unknown_symbol"} 1.0',
        "ticker_send_latency_seconds_bucket",
    ]:
        assert name in text, name


async def test_plain_http_to_the_websocket_path_is_refused(server: TickerServer) -> None:
    """A browser-style GET without an upgrade gets a 426, not a crash."""
    status, _, _ = await asyncio.to_thread(http_get, server.url.replace("ws://", "http://") + "/")
    assert status == 426


# -- bad input against the real server process ------------------------------------------------

CORPUS: list[tuple[str | bytes, str]] = [
    ("not json", "bad_request"),
    ("", "bad_request"),
    (b"", "bad_request"),
    (b"\x00\x01binary", "bad_request"),
    ("[]", "bad_request"),
    ('"just a string"', "bad_request"),
    ("null", "bad_request"),
    ("{}", "bad_request"),
    ('{"type": 5}', "bad_request"),
    ('{"type": null}', "bad_request"),
    ('{"type": "PING"}', "unknown_type"),
    ('{"type": "x' + "y" * 30000 + '"}', "unknown_type"),
    ('{"type": "subscribe", "symbols": null}', "bad_request"),
    ('{"type": "subscribe", "symbols": {"AAPL": 1}}', "bad_request"),
    ('{"type": "subscribe", "symbols": [["AAPL"]]}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "max_rate": true}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "max_rate": 0}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "max_rate": 1e400}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "snapshot": -1}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "snapshot": "all"}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "since": [1]}', "bad_request"),
    ('{"type": "subscribe", "symbols": ["AAPL"], "since": {"AAPL": "x"}}', "bad_request"),
    ('{"type": "unsubscribe"}', "bad_request"),
    ('{"type": "unsubscribe", "symbols": "AAPL"}', "bad_request"),
    ('{"type": "ping", "id": {"nested": true}}', "bad_request"),
    ('{"type": "ping", "id": null}', "pong"),
    (
        '{"type": "subscribe", "symbols": ["\u202eLPAA", "\U0001f680", "A\\u0000B"]}',
        "unknown_symbol",
    ),
    (
        json.dumps({"type": "subscribe", "symbols": ["S" * 8 for _ in range(5000)]}),
        "unknown_symbol",
    ),
    (json.dumps({"type": "subscribe", "symbols": ["Z" * 60000]}), "unknown_symbol"),
    ("[" * 20000 + "]" * 20000, "bad_request"),
    ('{"a":' * 5000 + "1" + "}" * 5000, "bad_request"),
]


async def test_bad_input_corpus_against_the_process(spawn_server: SpawnServer) -> None:
    """Every corpus entry gets its documented reply, a bystander keeps receiving, and the log has no traceback."""
    server = await spawn_server("--port", "0", "--tick-rate", "20", "--request-burst", "100")
    url = server.url
    try:
        async with connect(url, max_size=None) as bystander, connect(url, max_size=None) as ws:
            await bystander.recv()
            await bystander.send(json.dumps({"type": "subscribe", "symbols": ["AAPL"]}))
            await ws.recv()
            for frame, expected in CORPUS:
                await ws.send(frame)
                async with asyncio.timeout(TIMEOUT):
                    while True:
                        reply = json.loads(await ws.recv())
                        if reply["type"] in {"error", "pong"}:
                            break
                got = reply["code"] if reply["type"] == "error" else reply["type"]
                assert got == expected, (str(frame)[:60], reply)
            bystander_ticks = 0
            async with asyncio.timeout(TIMEOUT):
                while bystander_ticks < 3:
                    if json.loads(await bystander.recv())["type"] == "ticks":
                        bystander_ticks += 1
    finally:
        await server.stop()
    log = server.text()
    assert "Traceback" not in log and "ERROR" not in log
