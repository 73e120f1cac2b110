"""Small generic utilities: attribute dicts, cached URL opening, atomic writes, output checks, log teeing, user
errors."""

from .output_path import OutputPath, check_free_space, check_output_path, replace_folder
from .util import (
    MAX_SEED,
    SEED,
    EasyDict,
    Logger,
    UserError,
    atomic_write,
    make_cache_dir_path,
    open_url,
    remove_stale_temp_files,
)

__all__ = [
    "MAX_SEED",
    "SEED",
    "EasyDict",
    "Logger",
    "OutputPath",
    "UserError",
    "atomic_write",
    "check_free_space",
    "check_output_path",
    "make_cache_dir_path",
    "open_url",
    "remove_stale_temp_files",
    "replace_folder",
]
