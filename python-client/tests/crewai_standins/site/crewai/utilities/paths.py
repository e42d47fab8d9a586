"""Stand-in for crewai.utilities.paths (tests only): appdirs' user_data_dir rule on Linux."""
import os
from pathlib import Path


def get_project_directory_name() -> str:
    return os.environ.get("CREWAI_STORAGE_DIR") or Path.cwd().name


def db_storage_path() -> str:
    base = os.getenv("XDG_DATA_HOME", os.path.expanduser("~/.local/share"))
    data_dir = Path(os.path.join(base, get_project_directory_name()))
    data_dir.mkdir(parents=True, exist_ok=True)
    return str(data_dir)
