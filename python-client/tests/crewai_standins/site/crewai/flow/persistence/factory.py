"""Stand-in for crewai.flow.persistence.factory (1.14.7+), tests only."""
from typing import Any, Callable, Optional

_factory: Optional[Callable[[], Any]] = None


def set_flow_persistence_factory(factory: Optional[Callable[[], Any]]) -> None:
    global _factory
    _factory = factory


def default_flow_persistence() -> Any:
    factory = _factory
    if factory is not None:
        return factory()
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    return SQLiteFlowPersistence()
