import os

# Both must be set before tensorflow / gcsfs are imported anywhere in the test session.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Prefect: a private home and cache for the session, no telemetry, short retry delays.
import tempfile

_SESSION_DIR = tempfile.mkdtemp(prefix="warmstart-tests-")
os.environ.setdefault("PREFECT_HOME", os.path.join(_SESSION_DIR, "prefect-home"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("WARMSTART_CACHE_DIR", os.path.join(_SESSION_DIR, "cache"))
os.environ.setdefault("WARMSTART_RETRY_BASE_SECONDS", "0.2")

import resource
import uuid

import pytest

# Every test, and every process it starts (they inherit it), runs under a cap on its writable memory: an
# unbounded read fails the test with a MemoryError instead of exhausting the machine. RLIMIT_DATA counts
# what a process really writes (TensorFlow's import: ~0.35 GiB), not the address space it reserves.
_CAP = int(os.environ.get("WARMSTART_TEST_MEMORY_CAP", str(8 << 30)))
_soft, _hard = resource.getrlimit(resource.RLIMIT_DATA)
if _soft == resource.RLIM_INFINITY or _soft > _CAP:
    resource.setrlimit(resource.RLIMIT_DATA, (_CAP, _hard))

try:
    from servers import GCSServer, S3Server, clear_fs_caches
except ImportError:  # tests/ became a package
    from tests.servers import GCSServer, S3Server, clear_fs_caches


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: talks to a real server (moto S3, GCS emulator, ...)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _bucket_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API for the session (flows called in-process report to it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the whole session (see ``servers.S3Server``)."""
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server():
    """An in-memory GCS emulator on 127.0.0.1 for the whole session (see ``servers.GCSServer``)."""
    with GCSServer() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket: ``"s3://<name>"``. Deleted (with its objects) afterwards.

    fsspec's cached S3FileSystem instances (and their listing caches) are dropped before and after.
    """
    name = _bucket_name("test")
    clear_fs_caches()
    url = s3_server.make_bucket(name)
    yield url
    clear_fs_caches()
    s3_server.delete_bucket(name)


@pytest.fixture
def gcs_bucket(gcs_server):
    """A fresh, empty bucket: ``"gs://<name>"``. Deleted (with its objects) afterwards.

    fsspec's cached GCSFileSystem instances (and their listing caches) are dropped before and after.
    """
    name = _bucket_name("test")
    clear_fs_caches()
    url = gcs_server.make_bucket(name)
    yield url
    clear_fs_caches()
    gcs_server.delete_bucket(name)


@pytest.fixture(scope="session")
def bert_dirs(tmp_path_factory):
    """The BERT-like example written by TF once per session: ``src/`` (pretrained) and ``tpl/`` (the renamed,
    grown model's template); transfer it with ``warmstart.examples.EXAMPLE_RULES``. Tests must not modify it."""
    from warmstart.examples import write_bert_like_source, write_renamed_template

    root = tmp_path_factory.mktemp("bert")
    write_bert_like_source(root / "src")
    write_renamed_template(root / "tpl")
    return root
