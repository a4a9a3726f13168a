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
