"""The user's shared server (the module as it was before the transport package): see
sqlite_rpc.transport.shared."""
from .transport.shared import *  # noqa: F401,F403
from .transport.shared import SUN_PATH_MAX, SocketServer, _connect, connect_or_start, locate  # noqa: F401
