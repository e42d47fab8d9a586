"""LSP-style framing and the MessagePack codec (protocol/PROTOCOL.md sections 1-2)."""
from __future__ import annotations

from typing import Any, List, Union

import msgpack

_HEADER_END = b"\r\n\r\n"
MAX_HEADER = 8192


class FramingError(Exception):
    pass


def encode_frame(message: Any) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def decode_body(body: Union[bytes, memoryview]) -> Any:
    # Arrays come back as tuples: rows are tuples, as sqlite3 returns them, with no copy.
    return msgpack.unpackb(body, raw=False, use_list=False, strict_map_key=False)


def content_length(buf: bytearray, end: int) -> int:
    """The Content-Length of the header block buf[:end] (the server's own form, or any other)."""
    if buf.startswith(b"Content-Length: ") and buf[16:end].isdigit():
        return int(buf[16:end])  # the server's own form
    length = -1
    for line in bytes(buf[:end]).split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            raise FramingError("malformed header line %r" % line[:80])
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise FramingError("bad Content-Length %r" % value[:40]) from None
    if length < 0:
        raise FramingError("frame without Content-Length")
    return length


class FrameBuffer:
    """Accumulates bytes; yields complete frame bodies. Any split of the stream works."""

    __slots__ = ("buf", "max_frame")

    def __init__(self, max_frame: int = 1 << 31) -> None:
        self.buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> List[bytes]:
        buf = self.buf
        if not buf and data.startswith(b"Content-Length: "):
            # Fast path: one whole frame in one read, headers exactly as the server writes them.
            end = data.find(_HEADER_END, 16)
            if end > 0 and data[16:end].isdigit():
                n = int(data[16:end])
                if n <= self.max_frame and len(data) == end + 4 + n:
                    return [data[end + 4:]]
        buf += data
        out: List[bytes] = []
        while True:
            end = buf.find(_HEADER_END)
            if end < 0:
                if len(buf) > MAX_HEADER:
                    raise FramingError("header block too long")
                return out
            length = content_length(buf, end)
            if length > self.max_frame:
                raise FramingError("frame of %d bytes exceeds the limit" % length)
            start = end + 4
            if len(buf) < start + length:
                return out
            out.append(bytes(buf[start:start + length]))
            del buf[:start + length]
