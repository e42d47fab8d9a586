"""Stand-in for crewai.flow.persistence.base (1.15.x: a pydantic model), tests only."""
from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Tuple, Union

from pydantic import BaseModel, Field


class FlowPersistence(BaseModel, ABC):
    persistence_type: str = Field(default="base")

    @abstractmethod
    def init_db(self) -> None: ...

    @abstractmethod
    def save_state(self, flow_uuid: str, method_name: str, state_data: Union[Dict[str, Any], BaseModel]) -> None: ...

    @abstractmethod
    def load_state(self, flow_uuid: str) -> Optional[Dict[str, Any]]: ...

    def save_pending_feedback(self, flow_uuid: str, context: Any, state_data: Any) -> None:
        self.save_state(flow_uuid, context.method_name, state_data)

    def load_pending_feedback(self, flow_uuid: str) -> Optional[Tuple[Dict[str, Any], Any]]:
        return None

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        pass
