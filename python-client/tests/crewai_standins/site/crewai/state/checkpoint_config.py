"""Stand-in for crewai.state.checkpoint_config.CheckpointConfig: its provider field is a
union discriminated by provider_type, which accepts SqliteProvider or a subclass. Tests only."""
from typing import Union

from pydantic import BaseModel, Field
from typing_extensions import Annotated

from crewai.state.provider.json_provider import JsonProvider
from crewai.state.provider.sqlite_provider import SqliteProvider


class CheckpointConfig(BaseModel):
    location: str = "./.checkpoints.db"
    provider: Annotated[Union[JsonProvider, SqliteProvider], Field(discriminator="provider_type")] = Field(
        default_factory=JsonProvider
    )
