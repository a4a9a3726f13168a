"""Paths: no spelling of a path (``..``, symlinks, ``//``, a parent directory) lets an output reach an
input; refusals come before anything is read or created (exit 4), and inputs stay byte-identical.
Paths are accepted as ``os.PathLike`` everywhere a URL is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import hostile
import pytest
from servers import upload_dir

import warmstart
from warmstart import StorageError
from warmstart.examples import EXAMPLE_RULES


@pytest.fixture
def example(bert_dirs):
    return bert_dirs


@pytest.fixture
def earlier_output(example, tmp_path):
    """A directory ``A`` holding an earlier warm start (named ``model.ckpt``): the source of the next one."""
    a = tmp_path / "A"
    warmstart.transfer(example / "src", example / "tpl", a, rules=EXAMPLE_RULES)
    return a


def refused(source, target, output, **kwargs):
    with pytest.raises(StorageError, match="input") as info:
        warmstart.transfer(source, target, output, overwrite=True, **kwargs)
    return info.value


@pytest.mark.parametrize("spelling", [
    lambda a: a.parent / "other" / ".." / a.name,
    lambda a: Path(str(a) + "/"),
    lambda a: Path(str(a).replace("/A", "//A")),
    lambda a: a / ".",
    lambda a: a / "sub" / "..",
])
def test_other_spellings_of_the_source_directory_are_refused_and_the_source_kept(earlier_output, example,
                                                                                  spelling):
    (earlier_output.parent / "other").mkdir(exist_ok=True)
    before = hostile.tree_digest(earlier_output)
    refused(earlier_output, example / "tpl", spelling(earlier_output))
    assert hostile.tree_digest(earlier_output) == before


def test_a_symlink_to_the_source_directory_is_refused_and_the_source_kept(earlier_output, example, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(earlier_output, target_is_directory=True)
    before = hostile.tree_digest(earlier_output)
    refused(earlier_output, example / "tpl", link)
    refused(link, example / "tpl", earlier_output)  # the source through a link, the output by its name
    assert hostile.tree_digest(earlier_output) == before


def test_an_output_that_contains_an_input_is_refused(example, tmp_path):
    """A parent of the source, of the template, or of a target/rules file: --overwrite would clear it."""
    work = tmp_path / "work"
    for name in ("src", "tpl"):
        hostile.copy_checkpoint(example / name, work / name)
    rules = tmp_path / "rules" / "model.ckpt.yaml"  # a name an overwrite would clear
    rules.parent.mkdir()
    rules.write_text(json.dumps(EXAMPLE_RULES))
    before = {d: hostile.tree_digest(d) for d in (work, rules.parent)}
    refused(work / "src", work / "tpl", work)
    refused(work / "src", work / "tpl", work / "tpl")
    refused(example / "src", example / "tpl", rules.parent, rules=rules)
    assert {d: hostile.tree_digest(d) for d in (work, rules.parent)} == before


def test_refusal_comes_before_any_tensor_is_read(example, tmp_path):
    """A source whose data file is gone: an unusable output is what the user hears about, at once."""
    src = hostile.copy_checkpoint(example / "src", tmp_path / "src")
    for data in src.glob("*.data-*"):
        data.unlink()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("someone else's")
    with pytest.raises(StorageError, match="not empty"):
        warmstart.transfer(src, example / "tpl", busy, rules=EXAMPLE_RULES)
    refused(src, example / "tpl", src / "out", rules=EXAMPLE_RULES)
    assert (busy / "notes.txt").read_text() == "someone else's"


def test_pathlib_paths_are_accepted_everywhere(example, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps(EXAMPLE_RULES))
    assert len(warmstart.read_table(example / "src")) > 0
    assert warmstart.plan(example / "src", example / "tpl", rules).ok
    report = warmstart.transfer(example / "src", example / "tpl", tmp_path / "out", rules=rules)
    assert report.ok and (tmp_path / "out" / "warmstart.json").is_file()
    assert len(warmstart.signature_of(tmp_path / "out")) == len(warmstart.read_table(example / "tpl"))


@pytest.mark.integration
def test_object_store_keys_are_compared_normalized(example, s3_server, s3_bucket):
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, example / "src", f"{s3_bucket}/runs/A")
    options = s3_server.storage_options()
    before = sorted(fs.ls(f"{s3_bucket}/runs/A"))
    for spelling in (f"{s3_bucket}/runs/B/../A", f"{s3_bucket}/runs//A", f"{s3_bucket}/runs/A/./x", f"{s3_bucket}/runs"):
        with pytest.raises(StorageError, match="input"):
            warmstart.transfer(f"{s3_bucket}/runs/A", example / "tpl", spelling, rules=EXAMPLE_RULES,
                               storage_options=options, overwrite=True)
    fs.invalidate_cache()
    assert sorted(fs.ls(f"{s3_bucket}/runs/A")) == before


def test_cli_transfer_into_another_spelling_of_the_source_exits_4_and_keeps_the_source(earlier_output, example,
                                                                                      tmp_path):
    """The issue's reproduction: ``warmstart transfer A TGT other/../A --overwrite`` used to empty A."""
    (tmp_path / "other").mkdir()
    before = hostile.tree_digest(earlier_output)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-m", "warmstart.cli", "transfer", "A", str(example / "tpl"),
                          "other/../A", "--overwrite"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 4, out.stderr[-2000:]
    assert "inside the directory of input" in out.stderr
    assert hostile.tree_digest(earlier_output) == before


def test_signature_is_never_written_over_its_own_target(tmp_path):
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps({"format": "warmstart.signature", "variables": [
        {"name": "a", "dtype": "float32", "shape": [5]}]}))
    before = sig.read_bytes()
    out = subprocess.run([sys.executable, "-m", "warmstart.cli", "signature", str(sig), "-o",
                          str(tmp_path / "x" / ".." / "sig.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 4 and "over its own target" in out.stderr, out.stderr
    assert sig.read_bytes() == before
