"""A TCP proxy that makes a local HTTP object server behave like a remote object store.

Each client connection gets its own upstream connection; bytes from the server to the client are
paced to ``--rate`` bytes per second **per connection** (as S3 caps each connection, not the client),
and the first byte of every response waits ``--latency`` seconds (the time to first byte of a remote
GET). Requests go upstream unchanged. Runs as its own process (asyncio, one thread), so that the
processes it serves do not share its interpreter:

    python benchmarks/throttle.py --upstream 127.0.0.1:5000 --port 0 --rate 8e6 --latency 0.03

It prints ``listening <port>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import time

_CHUNK = 64 * 1024


async def _pump_requests(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict) -> None:
    """Client to server: unchanged; each new request (data after a response began) re-arms the latency."""
    try:
        while data := await reader.read(_CHUNK):
            state["request_at"] = time.monotonic()
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _pump_responses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict,
                          rate: float, latency: float) -> None:
    """Server to client: the first byte after a request waits ``latency``; then at most ``rate`` B/s."""
    sent, started = 0, time.monotonic()
    try:
        while data := await reader.read(_CHUNK):
            if state.get("request_at") is not None:
                wait = state.pop("request_at") + latency - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent, started = 0, time.monotonic()
            sent += len(data)
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _serve(upstream: tuple[str, int], port: int, rate: float, latency: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*upstream)
        except OSError:
            client_w.close()
            return
        state: dict = {}
        await asyncio.gather(_pump_requests(client_r, server_w, state),
                             _pump_responses(server_r, client_w, state, rate, latency), return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="host:port of the object server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=20e6, help="bytes per second per connection")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds to the first byte of a response")
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    asyncio.run(_serve((host, int(port)), args.port, args.rate, args.latency))


if __name__ == "__main__":
    main()
