"""Generic helpers shared by every package: no torch, no GAN knowledge."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import requests

try:
    import fcntl
except ImportError:  # Windows: there an open file cannot be deleted, which protects a live writer's temp file
    fcntl = None


MAX_SEED = 2**32 - 1  # the largest seed np.random.RandomState takes
SEED = click.IntRange(0, MAX_SEED)  # the click type of every --seed: a bad seed is refused before any work


class UserError(click.ClickException, ValueError):
    """Bad input from the user (a file, a flag, a dataset): the message names it, says what was found and what was
    expected, on one line.

    Every command-line tool reports it as one 'Error: ...' line with exit status 1 (click does so for any
    ClickException); anything else is a bug and keeps its traceback. It is a ValueError, so library callers that
    catch ValueError for bad input keep working. `multiline=True` keeps the message's line breaks, for the few
    refusals that list several problems, one line each (e.g. the options a continued run may not change).
    """

    def __init__(self, message: str, multiline: bool = False):
        text = str(message).strip()
        super().__init__(text if multiline else re.sub(r"\s*\n\s*", " ", text))


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


def format_time(seconds: float) -> str:
    """Durations as the official logs print them: 12s, 3m 04s, 1h 02m 03s, 2d 03h 04m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s // 60 % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {s // 3600 % 24:02d}h {s // 60 % 60:02d}m"


# atomic_write's temp files: "." + target name + "." + mkstemp's 8 random characters + ".tmp".
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def current_umask() -> int:
    """The process's file-creation mask (read by setting and restoring it: Python has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a temp file or directory the mode a plain open() / os.makedirs() would have given it.

    mkstemp and mkdtemp create private (0600 / 0700) entries; renamed into place they would keep that mode, and
    outputs meant for others (snapshots, datasets, reports) would be readable by their owner only.
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file beside `path`, then rename it over `path`.

    A crash at any moment leaves either the old file or the complete new one, never half of one. The temp file
    (`.<name>.<random>.tmp`) stays locked (flock) for as long as it has that name, so `remove_stale_temp_files`
    can tell a live writer's temp file from one left behind by a killed process. The file gets the mode a plain
    open() would give it under the user's umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        apply_default_mode(tmp)
        with os.fdopen(fd, mode) as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            yield f
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, path)  # before the lock goes: an unlocked temp file is a dead writer's
        if fcntl is None:
            os.replace(tmp, path)  # Windows renames only closed files
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(directory: str | os.PathLike, min_age_s: float = 10.0, verbose: bool = True) -> list[str]:
    """Delete the temp files `atomic_write` left in `directory` when its process was killed; returns their paths.

    Tools call this when they start writing into a directory. Only files named like atomic_write's temp files are
    considered, and of those only the ones no live writer holds locked and untouched for `min_age_s` seconds (which
    covers the instant between a writer creating its temp file and locking it). Everything else stays.
    """
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        try:
            if not _TEMP_NAME.match(name) or not _is_stale(path, min_age_s):
                continue
            os.unlink(path)
        except OSError:  # renamed by its writer meanwhile, or not ours to read or delete
            continue
        removed.append(path)
    if removed and verbose:
        print(f"Removed {len(removed)} temp file(s) of interrupted writes in {directory}", file=sys.stderr)
    return removed


def _is_stale(path: str, min_age_s: float) -> bool:
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < min_age_s:
        return False
    if fcntl is None:
        return True  # Windows refuses to delete a file a live writer has open
    with open(path, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live atomic_write holds it
    return True  # its writer is gone, and no new writer ever reuses a temp name (mkstemp)


def make_cache_dir_path(*paths: str) -> str:
    """The cache root: $DNNLIB_CACHE_DIR, else $HOME/.cache/dnnlib, else the temp dir."""
    if "DNNLIB_CACHE_DIR" in os.environ:
        root = os.environ["DNNLIB_CACHE_DIR"]
    elif "HOME" in os.environ:
        root = os.path.join(os.environ["HOME"], ".cache", "dnnlib")
    elif "USERPROFILE" in os.environ:
        root = os.path.join(os.environ["USERPROFILE"], ".cache", "dnnlib")
    else:
        root = os.path.join(tempfile.gettempdir(), ".cache", "dnnlib")
    return os.path.join(root, *paths)


def _is_url(text: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", text, flags=re.IGNORECASE) is not None


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(path: str) -> str:
    """sha256 of a file's bytes, or of a folder's contents: every file below it, by relative name (sorted) and its
    own digest, so that renaming, adding or changing any file changes the result."""
    if not os.path.isdir(path):
        return file_digest(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}\0{file_digest(full)}\n".encode())
    return digest.hexdigest()


def _sha1_of_file(path: str) -> str:
    return file_digest(path, "sha1")


def _check_sha1(path: str, sha1: str | None, source: str) -> None:
    if sha1 is not None and _sha1_of_file(path).lower() != sha1.lower():
        raise OSError(
            f"{source}: SHA-1 mismatch (expected {sha1.lower()}, got {_sha1_of_file(path)}); "
            f"the file is corrupt or not the one expected"
        )


def cache_file_name(url: str) -> str:
    """The file name under which `open_url` caches a download of `url`."""
    url_md5 = hashlib.md5(url.encode("utf-8")).hexdigest()
    base = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    return f"{url_md5}_{re.sub(r'[^0-9a-zA-Z._-]', '_', base)}"


def _download(url: str, dest: str, num_attempts: int, verbose: bool) -> None:
    """Download `url` to `dest` atomically, retrying network errors."""
    last_error: Exception | None = None
    for _attempt in range(num_attempts):
        try:
            if verbose:
                print(f"Downloading {url} ...", end="", flush=True, file=sys.stderr)
            with requests.get(url, stream=True, timeout=30) as res:
                res.raise_for_status()
                with atomic_write(dest) as f:
                    for chunk in res.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
            if verbose:
                print(" done", file=sys.stderr)
            return
        except (requests.RequestException, OSError) as err:
            last_error = err
            if verbose:
                print(" failed", file=sys.stderr)
    raise OSError(
        f"Cannot download {url} ({last_error}). If this machine is offline, place the file at "
        f"{dest} or pass a local path instead of the URL."
    ) from last_error


def open_url(
    url: str,
    cache_dir: str | None = None,
    num_attempts: int = 3,
    verbose: bool = True,
    return_filename: bool = False,
    cache: bool = True,
    sha1: str | None = None,
) -> Any:
    """Open a local path, a file:// URL or an http(s) URL, caching downloads.

    Downloads go to `<cache_dir or make_cache_dir_path('downloads')>/<md5(url)>_<name>` and are reused.
    `sha1`, when given, is verified for every source. Returns a binary file object, or the local file
    name when `return_filename` is set.
    """
    if not _is_url(url) or url.lower().startswith("file://"):
        path = urllib.parse.unquote(urllib.parse.urlparse(url).path) if _is_url(url) else url
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{url}: no such file")
        _check_sha1(path, sha1, url)
        return path if return_filename else open(path, "rb")
    if not cache and not return_filename:
        with tempfile.TemporaryDirectory() as tmp:
            dest = os.path.join(tmp, "download")
            _download(url, dest, num_attempts, verbose)
            _check_sha1(dest, sha1, url)
            with open(dest, "rb") as f:
                return io.BytesIO(f.read())
    cache_dir = cache_dir or make_cache_dir_path("downloads")
    dest = os.path.join(cache_dir, cache_file_name(url))
    if not os.path.isfile(dest):
        _download(url, dest, num_attempts, verbose)
    _check_sha1(dest, sha1, url)
    return dest if return_filename else open(dest, "rb")


class Logger:
    """Tee everything written to stdout and stderr into a log file as well.

    The file gets whole lines only: a progress bar redraws its line with carriage returns on the terminal, and
    the file keeps just the last state of each such line.
    """

    def __init__(self, file_name: str | None = None, file_mode: str = "a", should_flush: bool = True):
        self.file = open(file_name, file_mode, encoding="utf-8") if file_name is not None else None
        self.should_flush = should_flush
        self.pending: dict[str, str] = {}  # per stream, the text after its last newline
        self.stdout, self.stderr = sys.stdout, sys.stderr
        sys.stdout = _Tee(self.stdout, self, "stdout")
        sys.stderr = _Tee(self.stderr, self, "stderr")

    def write_to_file(self, text: str, stream: str = "stdout") -> None:
        if self.file is None:
            return
        *lines, self.pending[stream] = (self.pending.get(stream, "") + text).split("\n")
        for line in lines:
            self.file.write(_last_redraw(line) + "\n")
        if lines and self.should_flush:
            self.file.flush()

    def close(self) -> None:
        """Restore stdout/stderr, write unfinished lines and close the log file."""
        if isinstance(sys.stdout, _Tee) and sys.stdout.logger is self:
            sys.stdout = self.stdout
        if isinstance(sys.stderr, _Tee) and sys.stderr.logger is self:
            sys.stderr = self.stderr
        if self.file is not None:
            for rest in self.pending.values():
                if _last_redraw(rest).strip():
                    self.file.write(_last_redraw(rest) + "\n")
            self.file.close()
            self.file = None

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_redraw(line: str) -> str:
    """What a terminal finally shows of a line that was redrawn with carriage returns."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


class _Tee:
    """A stream that writes to the original stream and to the logger's file."""

    def __init__(self, stream: IO[str], logger: Logger, name: str):
        self.stream, self.logger, self.name = stream, logger, name

    def write(self, text: str) -> int:
        self.logger.write_to_file(text, self.name)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
