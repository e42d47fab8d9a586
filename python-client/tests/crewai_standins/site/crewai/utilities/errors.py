"""Stand-in for crewai.utilities.errors (tests only)."""
from typing import Optional


class DatabaseOperationError(Exception):
    def __init__(self, message: str, original_error: Optional[Exception] = None) -> None:
        super().__init__(message)
        self.original_error = original_error


class DatabaseError:
    INIT_ERROR = "Database initialization error: {}"
    SAVE_ERROR = "Error saving task outputs: {}"
    UPDATE_ERROR = "Error updating task outputs: {}"
    LOAD_ERROR = "Error loading task outputs: {}"
    DELETE_ERROR = "Error deleting task outputs: {}"

    @classmethod
    def format_error(cls, template: str, error: Exception) -> str:
        return template.format(str(error))
