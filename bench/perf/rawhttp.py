"""A minimal HTTP/1.1 keep-alive client for load generation.

httpx spends about a millisecond of CPU per request and more as requests pile up in its pool: at
300 requests/s on this 2-core machine the sending process used a whole core and sent at 70/s
while the server idled half the time, so the benchmark measured the client. This one writes the
request bytes and reads the status, headers and a Content-Length body off a pool of asyncio
connections: tens of microseconds per request. It is for benchmarks only (no TLS, no chunked
bodies, no redirects).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class RawResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """POSTs JSON over at most ``connections`` keep-alive connections (a request waits for a
    free one, as in any client's pool)."""

    def __init__(self, base_url: str, connections: int = 200, timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout
        self.headers = headers or {}
        self._free: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
        self._free = asyncio.LifoQueue()
        for _ in range(connections):
            self._free.put_nowait(None)  # opened when first used

    async def post_json(self, path: str, body: Any,
                        headers: dict[str, str] | None = None) -> RawResponse:
        payload = json.dumps(body, separators=(",", ":")).encode()
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}",
                 "content-type: application/json", f"content-length: {len(payload)}"]
        lines += [f"{k}: {v}" for k, v in {**self.headers, **(headers or {})}.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
        connection = await self._free.get()
        try:
            if connection is None:
                connection = await asyncio.open_connection(self.host, self.port)
                response, keep = await asyncio.wait_for(self._exchange(connection, request),
                                                        self.timeout)
            else:
                try:
                    response, keep = await asyncio.wait_for(
                        self._exchange(connection, request), self.timeout)
                except (asyncio.IncompleteReadError, ConnectionResetError) as error:
                    if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                        raise
                    # A kept-alive connection the server closed while it sat idle (uvicorn
                    # after 5 s): nothing was answered, so send again on a new one, as every
                    # HTTP client does.
                    connection[1].close()
                    connection = await asyncio.open_connection(self.host, self.port)
                    response, keep = await asyncio.wait_for(
                        self._exchange(connection, request), self.timeout)
        except BaseException:
            if connection is not None:
                connection[1].close()
            self._free.put_nowait(None)
            raise
        if keep:
            self._free.put_nowait(connection)
        else:
            connection[1].close()
            self._free.put_nowait(None)
        return response

    @staticmethod
    async def _exchange(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        request: bytes) -> tuple[RawResponse, bool]:
        reader, writer = connection
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, keep = 0, True
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise ValueError("chunked answers are not supported by this client")
        body = await reader.readexactly(length) if length else b""
        return RawResponse(status, body), keep

    async def close(self) -> None:
        while not self._free.empty():
            connection = self._free.get_nowait()
            if connection is not None:
                connection[1].close()
