"""The local cache is bounded: by age of disuse and by size (least recently used first), never
removing an entry a run may be using; ``warmstart cache`` shows and prunes it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from warmstart.cache import CheckpointCache
from warmstart.planning.report import human_bytes
from warmstart.examples import write_example_set


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def age(entry_dir, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(entry_dir / "last-used", (then, then))


def test_prune_by_age_then_by_size_least_recently_used_first(example, tmp_path):
    cache = CheckpointCache(tmp_path / "cache")
    old = cache.fetch_index(example.source)  # a TF checkpoint's index
    recent = cache.fetch_index(example.target)
    entries = {e.path.name: e for e in cache.entries()}
    assert len(entries) == 2 and all(e.bytes > 0 for e in entries.values())
    age(tmp_path / "cache" / os.path.basename(old.directory), 40 * 86400)
    age(tmp_path / "cache" / os.path.basename(recent.directory), 3600)
    removed = cache.prune(max_age_seconds=30 * 86400)
    assert [e.path.name for e in removed] == [os.path.basename(old.directory)]
    assert cache.fetch_index(example.source).hit is False  # fetched again, and used just now
    removed = cache.prune(max_bytes=0)  # over any size: the least recent goes, the one in use stays
    assert [e.path.name for e in removed] == [os.path.basename(recent.directory)]
    assert [e.path.name for e in cache.entries()] == [os.path.basename(old.directory)]


def test_the_cache_command_shows_and_prunes(example, tmp_path):
    cache = CheckpointCache(tmp_path / "cache")
    cache.fetch_index(example.source)
    run = [sys.executable, "-m", "warmstart.cli", "cache"]
    shown = subprocess.run([*run, "info", "--dir", str(tmp_path / "cache")], capture_output=True, text=True)
    assert shown.returncode == 0 and "1 entries" in shown.stdout
    # sizes in binary units, as everywhere a person reads one (not 21,474,836,480 bytes)
    bound = re.escape(human_bytes(cache.max_bytes))  # 20.0 GiB unless WARMSTART_CACHE_MAX_BYTES says otherwise
    assert re.search(rf"1 entries, [0-9.]+ KiB \(bounds: {bound}, ", shown.stdout), shown.stdout
    pruned = subprocess.run([*run, "prune", "--dir", str(tmp_path / "cache"), "--max-size", "0", "--all"],
                            capture_output=True, text=True)
    assert pruned.returncode == 0 and re.search(r"removed 1 entries \([0-9.]+ KiB\)", pruned.stderr)
    assert "0 entries, 0 B" in pruned.stdout
    bad = subprocess.run([*run, "prune", "--dir", str(tmp_path / "cache"), "--max-size", "lots"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "not a size" in bad.stderr
