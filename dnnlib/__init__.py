"""Small generic utilities: attribute dicts, cached URL opening, atomic writes, log teeing."""

from .util import EasyDict, Logger, atomic_write, make_cache_dir_path, open_url

__all__ = ["EasyDict", "Logger", "atomic_write", "make_cache_dir_path", "open_url"]
