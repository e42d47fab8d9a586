"""This process's servers (the names as they were before the transport package): see
sqlite_rpc.transport.home, .client, .pipe, .lookup and .logs."""
from .protocol import ServerError, StartRefused, client_error, exception_from_error
from .transport.client import PIPE_BYTES, ServerProcess, _Slot, interrupted_slot
from .transport.framing import encode_frame
from .transport.home import PRIVATE, SHARED, Home, current, generation, get_server, home, running, shutdown, use_shared
from .transport.logs import log, log_record, server_log, slow_log
from .transport.lookup import ENV_ARGS, ENV_BINARY, ENV_DISABLE, ENV_SHARED, find_binary, server_args
from .transport.pipe import PipeServer

__all__ = [
    "ServerError", "StartRefused", "client_error", "exception_from_error", "PIPE_BYTES", "ServerProcess", "_Slot",
    "interrupted_slot", "encode_frame", "PRIVATE", "SHARED", "Home", "current", "generation", "get_server", "home",
    "running", "shutdown", "use_shared", "log", "log_record", "server_log", "slow_log", "ENV_ARGS", "ENV_BINARY",
    "ENV_DISABLE", "ENV_SHARED", "find_binary", "server_args", "PipeServer",
]
