"""Stand-in for crewai.state.provider.core.BaseProvider (a pydantic ABC), tests only."""
from abc import ABC, abstractmethod
from typing import Optional

from pydantic import BaseModel


class BaseProvider(BaseModel, ABC):
    provider_type: str = "base"

    @abstractmethod
    def checkpoint(self, data: str, location: str, *, parent_id: Optional[str] = None, branch: str = "main") -> str: ...

    @abstractmethod
    async def acheckpoint(self, data: str, location: str, *, parent_id: Optional[str] = None, branch: str = "main") -> str: ...

    @abstractmethod
    def prune(self, location: str, max_keep: int, *, branch: str = "main") -> int: ...

    @abstractmethod
    def extract_id(self, location: str) -> str: ...

    @abstractmethod
    def from_checkpoint(self, location: str) -> str: ...

    @abstractmethod
    async def afrom_checkpoint(self, location: str) -> str: ...
