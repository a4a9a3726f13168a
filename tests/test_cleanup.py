"""A failed run leaves the output location as it found it: no directory it created, no bucket, no
object; an interrupted run's leftovers are cleared by the next run; an overwrite touches only what
warmstart writes. In the flow, an unusable output fails validation before any tensor is fetched."""

from __future__ import annotations

import json

import fsspec
import hostile
import pytest
from servers import clear_fs_caches, upload_dir

import warmstart
from warmstart import CorruptCheckpointError, StorageError
from warmstart.examples import EXAMPLE_RULES
from warmstart.formats.bundle import BundleReader
from warmstart.storage.publish import INCOMPLETE_MARKER


@pytest.fixture
def example(bert_dirs):
    return bert_dirs


@pytest.fixture
def corrupt_source(example, tmp_path):
    """The example source with one copied tensor's bytes flipped: the transfer fails mid-copy."""
    src = hostile.copy_checkpoint(example / "src", tmp_path / "corrupt")
    entry = BundleReader(str(src)).records["bert/encoder/layer_1/output/dense/kernel"].entry
    data = next(src.glob("*.data-*"))
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 3] ^= 0xFF
    data.write_bytes(bytes(raw))
    return src


def test_a_failed_run_removes_the_directories_it_created(example, corrupt_source, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    with pytest.raises(CorruptCheckpointError, match="CRC32C"):
        warmstart.transfer(corrupt_source, example / "tpl", parent / "a" / "b" / "out", rules=EXAMPLE_RULES)
    assert list(parent.iterdir()) == []  # a/, a/b/ and out/ were created by the run: all gone


def test_a_failed_run_keeps_an_existing_empty_output_directory(example, corrupt_source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptCheckpointError):
        warmstart.transfer(corrupt_source, example / "tpl", out, rules=EXAMPLE_RULES)
    assert out.is_dir() and list(out.iterdir()) == []


def test_an_interrupted_runs_leftovers_are_cleared_by_the_next_run(example, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / INCOMPLETE_MARKER).write_text("")
    (out / "model.ckpt.data-00000-of-00001").write_bytes(b"half a checkpoint")
    report = warmstart.transfer(example / "src", example / "tpl", out, rules=EXAMPLE_RULES)
    assert report.ok
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint", "model.ckpt.data-00000-of-00001", "model.ckpt.index", "warmstart.json"]


def test_a_marker_beside_foreign_files_is_not_taken_for_leftovers(example, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / INCOMPLETE_MARKER).write_text("")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="not empty"):
        warmstart.transfer(example / "src", example / "tpl", out, rules=EXAMPLE_RULES)
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_only_what_warmstart_wrote(example, tmp_path):
    out = tmp_path / "out"
    warmstart.transfer(example / "src", example / "tpl", out, rules=EXAMPLE_RULES)
    (out / "notes.txt").write_text("mine")
    (out / "warmstart.json").write_text('{"stale": true}')  # so that the replacement shows
    warmstart.transfer(example / "src", example / "tpl", out, rules=EXAMPLE_RULES, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "warmstart.json").read_text())["format"] == "warmstart.manifest"
    assert not (out / INCOMPLETE_MARKER).exists()


@pytest.mark.integration
def test_a_missing_output_bucket_is_refused_and_not_created(example, s3_server):
    fs = s3_server.filesystem()
    bucket = "no-such-bucket-warmstart"
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-warmstart' does not exist"):
        warmstart.transfer(example / "src", example / "tpl", f"s3://{bucket}/out", rules=EXAMPLE_RULES,
                           storage_options=s3_server.storage_options())
    fs.invalidate_cache()
    assert not fs.exists(bucket)


@pytest.mark.integration
def test_a_failed_run_leaves_no_object_in_the_output_bucket(example, corrupt_source, s3_server, s3_bucket):
    fs = s3_server.filesystem()
    with pytest.raises(CorruptCheckpointError):
        warmstart.transfer(corrupt_source, example / "tpl", f"{s3_bucket}/out", rules=EXAMPLE_RULES,
                           storage_options=s3_server.storage_options())
    fs.invalidate_cache()
    assert fs.find(s3_bucket) == []


@pytest.mark.integration
def test_the_flow_refuses_a_non_empty_output_before_fetching_tensors(prefect_api, example, s3_server, s3_bucket,
                                                                     monkeypatch):
    from test_flow import request, task_runs

    from warmstart.flows.warm_start import warm_start

    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, example / "src", f"{s3_bucket}/src")
    fs.pipe(f"{s3_bucket}/out/notes.txt", b"someone else's")
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    clear_fs_caches()
    state = warm_start(**request(source=f"{s3_bucket}/src", target=str(example / "tpl"), output=f"{s3_bucket}/out"),
                       return_state=True)
    assert state.is_failed()
    with pytest.raises(StorageError, match="not empty"):
        state.result()
    names = {t.name.rsplit("-", 1)[0] for t in task_runs(state.state_details.flow_run_id)}
    assert "validate" in names and "fetch-tensors" not in names and "transfer" not in names, names
