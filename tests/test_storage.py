"""Transient-error classification (what the Prefect tasks retry) and storage resolution details."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from warmstart import (
    CorruptCheckpointError,
    InputNotFoundError,
    PlanError,
    StorageError,
)
from warmstart.storage import is_transient


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


@pytest.mark.parametrize("exc", [
    ConnectionResetError("Connection reset by peer"),
    TimeoutError("read timed out"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    client_error("SlowDown", 503),
    client_error("InternalError", 500),
    OSError(5, "An error occurred (ServiceUnavailable) when calling GetObject"),
    StorageError("upload failed", transient=True),
])
def test_transient_failures(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    FileNotFoundError("nope"),
    PermissionError("denied"),
    client_error("AccessDenied", 403),
    CorruptCheckpointError("bad crc"),
    InputNotFoundError("missing"),
    PlanError("plan failed"),
    StorageError("output is not empty"),
    ValueError("bad"),
])
def test_permanent_failures(exc):
    assert not is_transient(exc)


def test_the_cause_chain_is_followed():
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


# ---------------------------------------------------------------- local paths without fsspec (storage/localfs.py)

@pytest.mark.parametrize("url", ["ckpt/run-1", "./ckpt", ".", "ckpt/", "file:///tmp/x/y", "file://rel/x", "file:rel",
                                 "local:///tmp/z", "~/models/x", "/", "a b/c:d", "x?y#z"])
def test_a_local_path_resolves_as_fsspec_resolves_it(url, tmp_path, monkeypatch):
    from fsspec.core import url_to_fs

    from warmstart.storage import resolve
    from warmstart.storage.localfs import LOCAL

    monkeypatch.chdir(tmp_path)
    fs, path = url_to_fs(url)
    loc = resolve(url)
    assert loc.fs is LOCAL and loc.is_local
    assert (loc.path, loc.url) == (path.rstrip("/") or path, fs.unstrip_protocol(path))


@pytest.mark.parametrize("url", ["memory://bucket/x", "simplecache::file:///tmp/x", "s3://bucket/key"])
def test_other_urls_and_local_paths_with_options_go_through_fsspec(url):
    from warmstart.storage import resolve
    from warmstart.storage.localfs import LocalFS

    assert not isinstance(resolve(url).fs, LocalFS)
    assert not isinstance(resolve("/tmp/x", {"auto_mkdir": True}).fs, LocalFS)


def test_the_local_filesystem_answers_as_fsspecs_local_filesystem(tmp_path):
    import fsspec

    from warmstart.storage.localfs import LOCAL

    ours, theirs = LOCAL, fsspec.filesystem("file")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(bytes(range(200)))
    (tmp_path / "link").symlink_to(tmp_path / "d" / "f.bin")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    paths = [str(tmp_path / n) for n in ("d", "d/f.bin", "link", "broken", "nowhere")] + [f"file://{tmp_path}/d/"]
    for path in paths:
        for call in ("exists", "isdir", "isfile", "_parent", "unstrip_protocol", "_strip_protocol"):
            assert getattr(ours, call)(path) == getattr(theirs, call)(path), (call, path)
    for path in paths[:3]:
        assert ours.info(path) == theirs.info(path)
        assert sorted(ours.ls(path)) == sorted(theirs.ls(path, detail=False))
    for start, end in [(None, None), (10, 20), (190, None), (-5, None), (3, -3)]:
        assert ours.cat_file(paths[1], start, end) == theirs.cat_file(paths[1], start, end)
    with pytest.raises(FileNotFoundError):
        ours.info(paths[3])
    with pytest.raises(ValueError, match="recursive"):
        ours.rm(paths[0])


def test_the_local_filesystem_writes_moves_and_removes_as_fsspecs_does(tmp_path):
    import pickle

    from warmstart.storage.localfs import LOCAL

    out = tmp_path / "out"
    LOCAL.makedirs(str(out / "a"), exist_ok=True)
    with LOCAL.open(str(out / "a" / "t.txt"), "w") as f:
        f.write("text")
    LOCAL.pipe_file(str(out / "p.bin"), b"123", mode="create")
    with pytest.raises(FileExistsError):
        LOCAL.pipe_file(str(out / "p.bin"), b"456", mode="create")
    LOCAL.mv(str(out / "p.bin"), str(out / "q.bin"))
    LOCAL.put_file(str(out / "q.bin"), str(out / "r.bin"))
    assert (out / "r.bin").read_bytes() == b"123" and not (out / "p.bin").exists()
    assert LOCAL.find(str(out)) == sorted(str(p) for p in out.rglob("*") if p.is_file())  # fsspec's own, imported now
    LOCAL.rm(str(out), recursive=True)
    assert not out.exists()
    assert pickle.loads(pickle.dumps(LOCAL)) == LOCAL
