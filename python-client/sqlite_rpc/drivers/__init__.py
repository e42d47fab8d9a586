"""The drivers: how the core's operations (sqlite_rpc._core) reach the server. sync: blocking
round trips on the calling thread (the sqlite3 API); aio: awaited ones (the aiosqlite API)."""
