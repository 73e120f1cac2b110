"""Small generic utilities: attribute dicts, cached URL opening, atomic writes, log teeing, user errors."""

from .util import (MAX_SEED, SEED, EasyDict, Logger, UserError, atomic_write, make_cache_dir_path, open_url,
                   remove_stale_temp_files)

__all__ = ["MAX_SEED", "SEED", "EasyDict", "Logger", "UserError", "atomic_write", "make_cache_dir_path", "open_url",
           "remove_stale_temp_files"]
