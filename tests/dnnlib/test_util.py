"""dnnlib.util: attribute dicts, atomic writes, cached open_url, log teeing."""

import hashlib
import http.server
import os
import stat
import sys
import threading

import pytest

import dnnlib
from dnnlib import util


def test_easydict_attribute_and_key_access_agree():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d["b"] == 2 and d.a == 1
    del d.a
    assert "a" not in d
    with pytest.raises(AttributeError):
        _ = d.missing


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with dnnlib.atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with dnnlib.atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_file_digest_is_hashlibs_of_the_whole_file(tmp_path):
    data = os.urandom(3 << 20 | 17)  # several 1 MiB chunks and a partial one
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert util.file_digest(str(path)) == hashlib.sha256(data).hexdigest()
    assert util.file_digest(str(path), "sha1") == hashlib.sha1(data).hexdigest()


def test_tree_digest_of_a_folder_follows_every_file_name_and_content(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"one")
    (folder / "sub" / "b.png").write_bytes(b"two")
    lines = [f"a.png\0{hashlib.sha256(b'one').hexdigest()}\n", f"sub/b.png\0{hashlib.sha256(b'two').hexdigest()}\n"]
    expected = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert util.tree_digest(str(folder)) == expected
    assert util.tree_digest(str(folder / "a.png")) == hashlib.sha256(b"one").hexdigest()  # a file: its own digest
    (folder / "sub" / "b.png").rename(folder / "sub" / "c.png")
    assert util.tree_digest(str(folder)) != expected


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path))
    assert dnnlib.make_cache_dir_path("downloads") == os.path.join(str(tmp_path), "downloads")


def test_open_url_local_path_and_file_url(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    sha1 = hashlib.sha1(b"weights").hexdigest()
    with dnnlib.open_url(str(path), sha1=sha1) as f:
        assert f.read() == b"weights"
    assert dnnlib.open_url(path.as_uri(), return_filename=True) == str(path)
    with pytest.raises(IOError, match="SHA-1 mismatch"):
        dnnlib.open_url(str(path), sha1="0" * 40)
    with pytest.raises(FileNotFoundError, match="no such file"):
        dnnlib.open_url(str(tmp_path / "missing.pt"))


@pytest.fixture
def http_server(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"payload")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a, **k: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_open_url_downloads_once_then_uses_cache(http_server, tmp_path):
    cache = tmp_path / "cache"
    url = f"{http_server}/model.pt"
    first = dnnlib.open_url(url, cache_dir=str(cache), return_filename=True, verbose=False)
    assert open(first, "rb").read() == b"payload"
    (tmp_path / "model.pt").unlink()  # the server can no longer serve it: the cache must answer
    with dnnlib.open_url(url, cache_dir=str(cache), verbose=False) as f:
        assert f.read() == b"payload"
    assert [p.name for p in cache.iterdir()] == [os.path.basename(first)]


def test_open_url_offline_without_cache_names_the_cache_path(tmp_path):
    url = "http://127.0.0.1:9/missing/inception.pt"  # port 9 (discard): connection refused at once
    with pytest.raises(IOError, match="offline") as info:
        dnnlib.open_url(url, cache_dir=str(tmp_path), num_attempts=1, verbose=False)
    assert str(tmp_path) in str(info.value)


def test_logger_tees_stdout_and_stderr(tmp_path):
    log = tmp_path / "log.txt"
    logger = dnnlib.Logger(str(log), file_mode="w")
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logger.close()
    assert not isinstance(sys.stdout, util._Tee)
    assert log.read_text() == "to stdout\nto stderr\n"


def test_logger_keeps_progress_bars_off_the_file(tmp_path, capsys):
    """A tqdm bar redraws its line with \\r: the terminal sees every state, the file only the final line."""
    from tqdm import tqdm

    log = tmp_path / "log.txt"
    logger = dnnlib.Logger(str(log), file_mode="w")
    print("before")
    for _ in tqdm(range(3), desc="bar", file=sys.stderr, mininterval=0, ascii=True):
        pass
    sys.stdout.write("left\rright")  # an unfinished line is written at close, as last drawn
    logger.close()
    lines = log.read_text().splitlines()
    assert "\r" not in log.read_text() and lines[0] == "before" and lines[2] == "right" and len(lines) == 3
    assert lines[1].startswith("bar: 100%") and "3/3" in lines[1]
    assert capsys.readouterr().err.count("\r") >= 3  # the terminal got the redraws


@pytest.mark.parametrize(
    "seconds, text", [(5.4, "5s"), (184, "3m 04s"), (3723, "1h 02m 03s"), (2 * 86400 + 3 * 3600 + 240, "2d 03h 04m")]
)
def test_format_time(seconds, text):
    assert util.format_time(seconds) == text


def test_user_error_is_one_click_error_line_and_a_value_error():
    import click
    from click.testing import CliRunner

    @click.command()
    def tool():
        raise dnnlib.UserError("x.pkl: not a network snapshot:\n  found text")

    result = CliRunner().invoke(tool, [])
    assert result.exit_code == 1 and result.output == "Error: x.pkl: not a network snapshot: found text\n"
    assert isinstance(dnnlib.UserError("m"), ValueError)
    listing = CliRunner().invoke(
        click.command()(
            lambda: (_ for _ in ()).throw(
                dnnlib.UserError("two options differ:\n  --a: 1, now 2\n  --b: 3, now 4", multiline=True)
            )
        ),
        [],
    )
    assert listing.exit_code == 1 and listing.output == "Error: two options differ:\n  --a: 1, now 2\n  --b: 3, now 4\n"


KILLED_WRITER = """
import os, signal, sys
import dnnlib
with dnnlib.atomic_write(sys.argv[1]) as f:
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _atomic_temp_files(directory):
    return sorted(name for name in os.listdir(directory) if util._TEMP_NAME.match(name))


def test_temp_file_of_a_killed_writer_is_removed_and_everything_else_stays(tmp_path):
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "checkpoint.pt")], env=env)
    assert proc.returncode == -9
    (stale,) = _atomic_temp_files(tmp_path)
    assert stale.startswith(".checkpoint.pt.") and not (tmp_path / "checkpoint.pt").exists()
    foreign = [
        "checkpoint.pt",
        "notes.tmp",
        ".checkpoint.pt.tmp",
        ".checkpoint.pt.ABCDEFGH.tmp",
        "checkpoint.pt.abcdefgh.tmp",
        ".network-snapshot-000040.pkl.abcdefgh.tmp.keep",
    ]
    for name in foreign:
        (tmp_path / name).write_bytes(b"someone's file")
    (tmp_path / ".run.abcdefgh.tmp").mkdir()  # a folder with a temp file's name is not ours either
    assert dnnlib.remove_stale_temp_files(tmp_path, min_age_s=0) == [str(tmp_path / stale)]
    assert sorted(os.listdir(tmp_path)) == sorted(foreign + [".run.abcdefgh.tmp"])


def test_temp_file_of_a_live_or_recent_writer_stays(tmp_path):
    with dnnlib.atomic_write(tmp_path / "live.bin") as f:
        f.write(b"being written")
        (live,) = _atomic_temp_files(tmp_path)
        os.utime(tmp_path / live, (0, 0))  # old, but its writer holds the lock
        assert dnnlib.remove_stale_temp_files(tmp_path, min_age_s=0) == []
    assert (tmp_path / "live.bin").read_bytes() == b"being written"
    recent = tmp_path / ".other.bin.abcd1234.tmp"  # unlocked, but just created: its writer may not have locked it
    recent.write_bytes(b"")
    assert dnnlib.remove_stale_temp_files(tmp_path) == [] and recent.exists()
    os.utime(recent, (0, 0))
    assert dnnlib.remove_stale_temp_files(tmp_path) == [str(recent)]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path, umask):
    """The renamed temp file must not keep mkstemp's private 0600: others read snapshots, zips and reports."""
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.bin", "wb") as f:
            f.write(b"x")
        with dnnlib.atomic_write(tmp_path / "atomic.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask  # 0644 under 022, 0600 under 077
    assert stat.S_IMODE(os.stat(tmp_path / "plain.bin").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "atomic.bin").st_mode) == expected
    assert dnnlib.util.current_umask() == old  # reading the mask leaves it as it was
