"""CrewAI on sqlite-rpc: sqlite_rpc.crewai is the package sqlite_rpc.adapters.crewai.

    import sqlite_rpc.crewai
    sqlite_rpc.crewai.install()      # before or after `import crewai`
"""
import sys
from typing import TYPE_CHECKING

from .adapters import crewai as _impl

if TYPE_CHECKING:
    # What type checkers see here: the package's public names (at run time this module is
    # the package itself).
    from .adapters.crewai import (FLOW_FACTORY_MODULE as FLOW_FACTORY_MODULE, TARGETS as TARGETS,
                                  FlowStateNotSerializableError as FlowStateNotSerializableError,
                                  KickoffTaskOutputsSQLiteStorage as KickoffTaskOutputsSQLiteStorage,
                                  LTMSQLiteStorage as LTMSQLiteStorage, PendingFeedbackContext as PendingFeedbackContext,
                                  __getattr__ as __getattr__, db_storage_path as db_storage_path, install as install,
                                  is_installed as is_installed, uninstall as uninstall)

sys.modules[__name__] = _impl
