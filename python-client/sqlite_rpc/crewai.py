"""CrewAI on sqlite-rpc: sqlite_rpc.crewai is the package sqlite_rpc.adapters.crewai.

    import sqlite_rpc.crewai
    sqlite_rpc.crewai.install()      # before or after `import crewai`
"""
import sys

from .adapters import crewai as _impl

sys.modules[__name__] = _impl
