"""One write per event-loop turn: what the services' connections send, and when."""

import asyncio

from microshop.server import TurnBufferedTransport


class RecordingTransport(asyncio.Transport):
    """The connection's end as the kernel sees it: each `write` is one system call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


async def next_turn() -> None:
    await asyncio.sleep(0)


async def test_what_one_turn_writes_leaves_in_one_write_after_it() -> None:
    connection = RecordingTransport()
    transport = TurnBufferedTransport(connection, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert connection.writes == []
    assert transport.get_write_buffer_size() == 40
    await next_turn()
    assert connection.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_writes_of_later_turns_are_not_held() -> None:
    connection = RecordingTransport()
    transport = TurnBufferedTransport(connection, asyncio.get_running_loop())
    for chunk in (b"a", b"b", b"c"):
        transport.write(chunk)
        await next_turn()
    assert connection.writes == [b"a", b"b", b"c"]


async def test_closing_sends_what_is_held_first() -> None:
    connection = RecordingTransport()
    transport = TurnBufferedTransport(connection, asyncio.get_running_loop())
    transport.write(b"last answer")
    transport.close()
    assert connection.writes == [b"last answer"]
    assert connection.closed
    await next_turn()
    assert connection.writes == [b"last answer"]


async def test_aborting_drops_what_is_held() -> None:
    connection = RecordingTransport()
    transport = TurnBufferedTransport(connection, asyncio.get_running_loop())
    transport.write(b"never sent")
    transport.abort()
    await next_turn()
    assert connection.writes == []
    assert connection.aborted
