"""An aiosqlite-compatible async API on the same multiplexed server connection: see
sqlite_rpc.drivers.aio.

    async with sqlite_rpc.aio.connect("app.db") as db:
        await db.execute("INSERT INTO t VALUES (?)", (1,))
        await db.commit()
"""
from .drivers.aio import Connection, Cursor, Error, Row, connect

__all__ = ["connect", "Connection", "Cursor", "Row", "Error"]
