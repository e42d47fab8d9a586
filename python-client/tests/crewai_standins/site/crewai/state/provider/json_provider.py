"""Stand-in for crewai.state.provider.json_provider.JsonProvider (only its type tag), tests only."""
from typing import Literal

from pydantic import BaseModel


class JsonProvider(BaseModel):
    provider_type: Literal["json"] = "json"
