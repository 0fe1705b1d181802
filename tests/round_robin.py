"""A TCP round-robin balancer on 127.0.0.1, standing in for a Kubernetes Service."""

import asyncio
import itertools
import threading
from collections import Counter


class RoundRobin:
    """Each new connection goes to the next backend port in turn."""

    def __init__(self, backend_ports: list[int]) -> None:
        self.backends = itertools.cycle(backend_ports)
        self.connections: Counter[int] = Counter()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "RoundRobin":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.listen(), self.loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def listen(self) -> None:
        server = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = next(self.backends)
        self.connections[port] += 1
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, backend_writer), pipe(backend_reader, writer))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
