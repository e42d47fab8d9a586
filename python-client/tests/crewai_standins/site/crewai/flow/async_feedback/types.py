"""Stand-in for crewai.flow.async_feedback.types.PendingFeedbackContext, tests only."""
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class PendingFeedbackContext:
    flow_id: str
    flow_class: str
    method_name: str
    method_output: Any = None
    message: str = ""
    emit: Optional[List[str]] = None
    default_outcome: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)
    llm: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PendingFeedbackContext":
        return cls(**data)
