"""python -m glassformer.data fetch: downloads served by a loopback HTTP server, checked, cached, resolved.

Every address is 127.0.0.1 (GLASSFORMER_DATA_MIRROR points fetch at it); nothing leaves the machine.
"""
import hashlib
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from glassformer.cli import lm, train
from glassformer.data import fetch
from glassformer.cli import fetch as fetch_cli
from glassformer.errors import UserError

ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("GLASSFORMER_DATA") or ROOT.parent / "shared" / "data")
TEXT = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 4000   # 252 KB: several reads


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes: {path: (body, how)}; how: ok, short (half, then closes), stall (half, then waits)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, how = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if how == "ok" else body[:len(body) // 2])
        self.wfile.flush()
        if how == "stall":
            self.server.release.wait(30)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A loopback HTTP server as the mirror, and an empty cache: GLASSFORMER_DATA(_MIRROR) point at them."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.routes, httpd.requests, httpd.release = {}, [], threading.Event()
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("GLASSFORMER_DATA_MIRROR", httpd.url)
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "cache"))
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def small_table(monkeypatch):
    """The table with one small made-up tinyshakespeare file (TEXT) in place of the real ones."""
    row = fetch.Remote("tinyshakespeare", "input.txt", "https://example.org/input.txt",
                       hashlib.sha256(TEXT).hexdigest(), len(TEXT))
    monkeypatch.setattr(fetch, "FILES", (row,))
    return row


def cache_files(tmp_path):
    """Every file under the cache (temp files too), as relative paths."""
    return sorted(str(p.relative_to(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*") if p.is_file())


def run_fetch(*argv, env=None, **kwargs):
    """python -m glassformer.data ARGV in a subprocess: the Popen."""
    return subprocess.Popen([sys.executable, "-m", "glassformer.data", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# ---- downloading ----------------------------------------------------------------------------------

def test_table_pins_the_files_of_shared_data():
    names = {(r.name, r.file) for r in fetch.FILES}
    assert set(fetch.NAMES) == {"tinyshakespeare", "wikitext-2", "gpt2-tokenizer", "wikipedia-sample"}
    assert ("wikitext-2", "train.txt") in names and len(names) == len(fetch.FILES) == 7
    assert all(len(r.sha256) == 64 and r.url.startswith("https://") and r.bytes > 0 for r in fetch.FILES)
    if not SHARED_DATA.is_dir():
        pytest.skip("shared/data is not here")
    for r in fetch.FILES:                                   # the cache layout is shared/data's
        assert (SHARED_DATA / r.name / r.file).stat().st_size == r.bytes, r.file
        assert fetch.sha256_of(SHARED_DATA / r.name / r.file) == r.sha256, r.file


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared/data is not here")
def test_fetch_all_from_a_mirror_checks_and_lays_out_every_file(server, tmp_path, monkeypatch):
    server.routes = {f"/{r.name}/{r.file}": ((SHARED_DATA / r.name / r.file).read_bytes(), "ok")
                     for r in fetch.FILES}
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert fetch_cli.main(["fetch", "all"]) == 0
    assert cache_files(tmp_path) == sorted(f"{r.name}/{r.file}" for r in fetch.FILES)
    for r in fetch.FILES:
        assert (tmp_path / "cache" / r.name / r.file).read_bytes() == (SHARED_DATA / r.name / r.file).read_bytes()
    assert "SHA-256 checked" in err.getvalue() and "input.txt" in err.getvalue()
    assert fetch.resolve_dataset("wikitext-2") == tmp_path / "cache" / "wikitext-2"
    assert fetch.resolve_dataset("tinyshakespeare") == tmp_path / "cache" / "tinyshakespeare" / "input.txt"


def test_a_file_already_fetched_is_not_downloaded_again(server, small_table, tmp_path):
    server.routes = {"/tinyshakespeare/input.txt": (TEXT, "ok")}
    assert fetch.fetch("tinyshakespeare", stream=io.StringIO()) == 1
    err = io.StringIO()
    assert fetch.fetch("tinyshakespeare", stream=err) == 0
    assert server.requests == ["/tinyshakespeare/input.txt"] and "already here" in err.getvalue()


def test_a_cached_file_with_the_wrong_sum_is_fetched_again(server, small_table, tmp_path):
    server.routes = {"/tinyshakespeare/input.txt": (TEXT, "ok")}
    (tmp_path / "cache" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "cache" / "tinyshakespeare" / "input.txt").write_bytes(b"not it")
    assert fetch.fetch("tinyshakespeare", stream=io.StringIO()) == 1
    assert (tmp_path / "cache" / "tinyshakespeare" / "input.txt").read_bytes() == TEXT


def test_a_download_whose_sha256_differs_is_refused_and_not_kept(server, small_table, tmp_path):
    server.routes = {"/tinyshakespeare/input.txt": (TEXT.upper(), "ok")}   # same length, other bytes
    with pytest.raises(UserError, match="SHA-256 is .* not the pinned .* nothing was kept"):
        fetch.fetch("tinyshakespeare", stream=io.StringIO())
    assert cache_files(tmp_path) == []


def test_a_connection_lost_midway_keeps_nothing(server, small_table, tmp_path):
    server.routes = {"/tinyshakespeare/input.txt": (TEXT, "short")}
    with pytest.raises(UserError, match=f"stopped after {len(TEXT) // 2:,} of the expected {len(TEXT):,}"):
        fetch.fetch("tinyshakespeare", stream=io.StringIO())
    assert cache_files(tmp_path) == []


def test_a_download_longer_than_the_pinned_size_is_cut_short_and_not_kept(server, small_table, tmp_path):
    server.routes = {"/tinyshakespeare/input.txt": (TEXT * 3, "ok")}   # e.g. an HTML page of the same name
    with pytest.raises(UserError, match=f"is longer than the expected {len(TEXT):,} bytes"):
        fetch.fetch("tinyshakespeare", stream=io.StringIO())
    assert cache_files(tmp_path) == []


def test_a_404_is_one_line_naming_the_address_and_the_place(server, small_table, tmp_path, capsys):
    assert fetch_cli.main(["fetch", "tinyshakespeare"]) == 2
    err = capsys.readouterr().err.strip()
    dest = tmp_path / "cache" / "tinyshakespeare" / "input.txt"
    assert err.startswith(f"error: {server.url}/tinyshakespeare/input.txt: HTTP 404") and "\n" not in err
    assert f"download {small_table.url} by hand and put it at {dest}" in err
    assert cache_files(tmp_path) == []


def test_offline_is_one_line_naming_the_address_and_the_place(tmp_path, monkeypatch, capsys):
    with socket.socket() as s:                              # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GLASSFORMER_DATA_MIRROR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "cache"))
    assert fetch_cli.main(["fetch", "gpt2-tokenizer"]) == 2
    err = capsys.readouterr().err.strip()
    url = [r.url for r in fetch.FILES if r.file == "encoder.json"][0]
    assert err.startswith(f"error: cannot download http://127.0.0.1:{port}/gpt2-tokenizer/encoder.json")
    assert "offline?" in err and "\n" not in err
    assert f"download {url} by hand and put it at {tmp_path / 'cache' / 'gpt2-tokenizer' / 'encoder.json'}" in err


def test_ctrl_c_during_a_download_leaves_no_partial_file(server, tmp_path):
    """The real table and command, in a subprocess: SIGINT once the temp file exists; nothing stays."""
    server.routes = {"/tinyshakespeare/input.txt": (b"x" * 1_115_394, "stall")}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get(
        "PYTHONPATH")])))
    proc = run_fetch("fetch", "tinyshakespeare", env=env)
    folder = tmp_path / "cache" / "tinyshakespeare"
    deadline = time.monotonic() + 60
    while not (folder.is_dir() and any(folder.iterdir())) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert [p.name.endswith(".tmp") for p in folder.iterdir()] == [True]    # the download under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err
    assert cache_files(tmp_path) == []


def test_list_and_bad_names(server, small_table, capsys):
    assert fetch_cli.main(["fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "tinyshakespeare" in out and "not fetched" in out and "GLASSFORMER_DATA" in out
    assert fetch_cli.main(["fetch", "tinyshakespear"]) == 2
    assert "unknown data set tinyshakespear" in capsys.readouterr().err
    assert fetch_cli.main(["fetch"]) == 2


# ---- --data NAME and --tokenizer gpt2 ---------------------------------------------------------------

def test_data_name_with_an_empty_cache_says_the_fetch_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert train.main(["--task", "lm", "--data", "tinyshakespeare", "--no-interactive"]) == 2
    err = capsys.readouterr().err
    assert "`python -m glassformer.data fetch tinyshakespeare`" in err and err.count("\n") == 1


def test_data_name_reads_the_cache_and_an_existing_path_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "cache"))
    (tmp_path / "cache" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "cache" / "tinyshakespeare" / "input.txt").write_bytes(TEXT)
    monkeypatch.chdir(tmp_path)
    s = lm.resolve_data({"data": "tinyshakespeare", "val_data": None, "test_data": None})
    assert s["data"] == str(tmp_path / "cache" / "tinyshakespeare" / "input.txt")
    (tmp_path / "tinyshakespeare").write_text("my own file\n")
    s = lm.resolve_data({"data": "tinyshakespeare", "val_data": None, "test_data": None})
    assert s["data"] == str(tmp_path / "tinyshakespeare")


def test_a_config_naming_a_data_set_trains_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "cache"))
    (tmp_path / "cache" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "cache" / "tinyshakespeare" / "input.txt").write_bytes(TEXT[:4000])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "run.json").write_text('{"task": "lm", "data": "tinyshakespeare", "steps": 1}')
    monkeypatch.chdir(tmp_path)
    argv = ["--config", "c/run.json", "--context", "8", "--batch-size", "2", "--eval-batches", "1",
            "--no-interactive", "--out", str(tmp_path / "run")]
    assert train.main(argv) == 0
    config = (tmp_path / "run" / "config.json").read_text()
    assert str(tmp_path / "cache" / "tinyshakespeare" / "input.txt") in config


def test_a_missing_path_from_a_config_names_the_configs_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "run.json").write_text('{"task": "lm", "data": "missing.txt", "steps": 1}')
    monkeypatch.chdir(tmp_path)
    assert train.main(["--config", "c/run.json", "--no-interactive"]) == 2
    err = capsys.readouterr().err
    assert "data missing.txt" in err and f"relative to its folder, {tmp_path / 'c'}" in err
    assert f"start at {tmp_path}" not in err


def test_gpt2_tokenizer_with_an_empty_cache_says_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSFORMER_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert lm.gpt2_dirs() == (Path("gpt2-tokenizer"), tmp_path / "empty" / "gpt2-tokenizer")
    with pytest.raises(UserError, match="`python -m glassformer.data fetch gpt2-tokenizer`"):
        lm.gpt2_tokenizer()


@pytest.mark.parametrize("argv", [["--help"], ["fetch", "--help"]])
def test_help_fits_80_columns(argv):
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                                 os.environ.get("PYTHONPATH")])))
    proc = run_fetch(*argv, env=env)
    out, _ = proc.communicate(timeout=120)
    wide = [line for line in out.splitlines() if len(line) > 80]
    assert proc.returncode == 0 and out.startswith("usage:") and "GLASSFORMER_DATA" in out and not wide, wide
