"""How the seed called its peers, with the `request` library and no timeouts at all.

A POST sends its value as JSON and hands the answer to a callback that ignores the status and
the error: the body is the parsed JSON, else the text, else `undefined`. A GET reads only the
first chunk of the answer, as the seed's `on('data')` handler did, and has no error handler:
a refused connection ends the process, and an answer without a body is waited for forever.
"""

import asyncio
from typing import Any

import aiohttp

from tests.seed import javascript

FIRST_CHUNK_BYTES = 64 * 1024
"""Node.js reads a socket 64 KiB at a time: a longer answer arrives in more than one chunk."""
UNLIMITED = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


class Peers:
    """One keep-alive connection pool to every peer, sending only what `request` sent."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=UNLIMITED,
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
            )
        return self.session

    async def post_json(self, url: str, value: Any) -> Any:
        """`request({uri, method: 'POST', json: value}, callback)`: the callback's body."""
        payload = javascript.stringify(value) or ""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        try:
            async with self.client().post(
                url, data=payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
        except aiohttp.ClientError:
            return javascript.UNDEFINED
        text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
        if not text:
            return javascript.UNDEFINED
        try:
            return javascript.parse(text)
        except ValueError:
            return text

    async def first_chunk(self, url: str) -> bytes:
        """`request.get(url).on('response', r => r.on('data', chunk => ...))`: the first chunk."""
        try:
            async with self.client().get(url) as response:
                chunk = await response.content.readany()
        except aiohttp.ClientError as error:
            javascript.crash(f"Error: {error}")
        if not chunk:  # no 'data' event ever comes: the seed never answers its own caller
            await asyncio.Event().wait()
        return chunk[:FIRST_CHUNK_BYTES]


def parse_chunk(chunk: bytes) -> Any:
    """`JSON.parse(chunk)` in a callback: a chunk that is not all of the JSON ends the process."""
    try:
        return javascript.parse(chunk.decode("utf-8", errors="replace"))
    except ValueError as error:
        javascript.crash(f"SyntaxError: {error}")
