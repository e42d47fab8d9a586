"""Adapters: sqlite_rpc under other libraries (crewai: CrewAI's SQLite storage)."""
