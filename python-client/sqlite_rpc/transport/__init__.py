"""The transport layer: how this process reaches a server and speaks to it.

framing: LSP-style frames and the MessagePack codec; client: the multiplexed connection to
one server (ServerProcess); pipe: a private server over stdio pipes; shared: the user's
shared server over a unix socket; lookup: the binary and its flags; logs: the server's log
records to Python logging; home: this process's servers (singletons, fork, exit).
"""
from .framing import MAX_HEADER, FrameBuffer, FramingError, content_length, decode_body, encode_frame

__all__ = ["MAX_HEADER", "FrameBuffer", "FramingError", "content_length", "decode_body", "encode_frame"]
