"""mmcl.data.download.fetch against a real HTTP server on 127.0.0.1 (error messages: test_bad_input.py)."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mmcl.data.download import fetch
from mmcl.data.records import DataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range`` unless ``server.ranges`` is off; the first
    ``server.failures`` requests get a 503; a path in ``server.drop_after`` has its connection cut
    after that many bytes, once."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if server.failures:
            server.failures -= 1
            self.send_error(503)
            return
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if server.ranges and (wanted := self.headers.get("Range")):
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_error(416)
                return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = server.drop_after.pop(self.path, None)
        self.wfile.write(body[start:] if cut is None else body[start : start + cut])
        self.close_connection = cut is not None

    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def serve(files: dict[str, bytes], ranges: bool = True, failures: int = 0, drop_after: dict | None = None):
    """A real HTTP server on 127.0.0.1 in a thread; yields it (``server.url``, ``server.requests``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.files, server.ranges, server.failures = files, ranges, failures
    server.drop_after, server.requests = dict(drop_after or {}), []
    server.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_downloads_verifies_and_moves_into_place(tmp_path):
    dest = tmp_path / "raw" / "data.bin"
    with serve({"/data.bin": PAYLOAD}) as server:
        assert fetch(f"{server.url}/data.bin", dest, SHA256.upper()) == dest
        assert dest.read_bytes() == PAYLOAD
        assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]  # no .part left behind
        fetch(f"{server.url}/data.bin", dest, SHA256)  # already there and verified: not downloaded again
        assert len(server.requests) == 1


@pytest.mark.parametrize("ranges", [True, False], ids=["resumes-with-range", "restarts-without-range"])
def test_dropped_connection_is_retried(tmp_path, ranges):
    dest = tmp_path / "data.bin"
    cut = len(PAYLOAD) // 3
    with serve({"/data.bin": PAYLOAD}, ranges=ranges, drop_after={"/data.bin": cut}) as server:
        fetch(f"{server.url}/data.bin", dest, SHA256, backoff=0.01)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None), ("/data.bin", f"bytes={cut}-")]


def test_part_left_by_an_earlier_run_is_resumed(tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(PAYLOAD[:1000])
    with serve({"/data.bin": PAYLOAD}) as server:
        fetch(f"{server.url}/data.bin", dest, SHA256)
    assert dest.read_bytes() == PAYLOAD and server.requests == [("/data.bin", "bytes=1000-")]


def test_complete_part_is_verified_without_downloading_again(tmp_path):
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(PAYLOAD)
    with serve({"/data.bin": PAYLOAD}) as server:  # answers 416: nothing left to send
        fetch(f"{server.url}/data.bin", dest, SHA256)
    assert dest.read_bytes() == PAYLOAD


def test_server_errors_are_retried_with_backoff(tmp_path):
    dest = tmp_path / "data.bin"
    with serve({"/data.bin": PAYLOAD}, failures=2) as server:
        fetch(f"{server.url}/data.bin", dest, SHA256, retries=2, backoff=0.01)
    assert dest.read_bytes() == PAYLOAD and len(server.requests) == 3


def test_gives_up_after_the_retries(tmp_path):
    dest = tmp_path / "data.bin"
    with serve({"/data.bin": PAYLOAD}, failures=5) as server, pytest.raises(DataError) as err:
        fetch(f"{server.url}/data.bin", dest, SHA256, retries=2, backoff=0.01)
    assert len(server.requests) == 3
    assert "after 3 attempts (HTTP 503" in str(err.value) and not dest.exists()


def test_missing_file_is_not_retried(tmp_path):
    with serve({}) as server, pytest.raises(DataError, match="HTTP 404"):
        fetch(f"{server.url}/gone.bin", tmp_path / "gone.bin", SHA256, backoff=0.01)
    assert len(server.requests) == 1


def test_wrong_file_placed_by_hand_is_refused(tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"something else")
    with pytest.raises(DataError, match=f"SHA-256 is .*, expected {SHA256}; delete it"):
        fetch("http://127.0.0.1:9/data.bin", dest, SHA256)
    assert dest.read_bytes() == b"something else"
