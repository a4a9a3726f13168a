"""Storage credentials from Prefect blocks: the flow's ``credentials`` parameter and the tasks' options.

The flow takes a block-typed parameter (the UI offers a block picker per type): ``AwsCredentials``,
``S3Bucket`` (its credentials), ``GcpCredentials``, ``GcsBucket`` (its credentials) or a ``Secret``
holding a JSON object of fsspec storage options. Callers without a picker may name a saved block by
slug instead (``aws-credentials/NAME``, ``s3-bucket/NAME``, ``secret/NAME``...).

A saved block, unchanged since it was loaded, travels between tasks and to Dask workers as its slug:
each task loads the block itself, so secret values never appear in task inputs or pickled units. A
block made in code, or changed after loading, travels as it is.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional, Union

from pydantic import BeforeValidator

from prefect.blocks.core import Block, UnknownBlockType
from prefect.blocks.system import Secret
from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket
from prefect_gcp import GcpCredentials, GcsBucket

from warmstart.errors import UsageError

__all__ = ["CredentialsBlock", "CredentialsParameter", "CredentialsRef", "credentials_reference", "storage_options_from_block"]

# The flow parameter's type: the UI renders one picker per block type (the order is the menu's).
CredentialsBlock = Union[AwsCredentials, S3Bucket, GcpCredentials, GcsBucket, Secret]
def _a_block(value: Any) -> Any:
    """Only blocks: a plain mapping would match the first type whose fields are all optional."""
    if value is None or isinstance(value, Block):
        return value
    raise ValueError(f"expected a saved credentials block (the form's picker, a saved block, or "
                     f"{{'$ref': {{'block_document_id': ...}}}}), not a {type(value).__name__}; "
                     "or name one with credentials_block")


# The flow's parameter: a block of one of those types, never a mapping guessed into one.
CredentialsParameter = Annotated[Optional[CredentialsBlock], BeforeValidator(_a_block)]
CredentialsRef = Union[Block, str, None]  # what tasks take: a block, or a saved block's slug
_ACCEPTED = (AwsCredentials, MinIOCredentials, S3Bucket, GcpCredentials, GcsBucket, Secret)
_SLUGS = "'aws-credentials/NAME', 's3-bucket/NAME', 'gcp-credentials/NAME', 'gcs-bucket/NAME' or 'secret/NAME'"


def credentials_reference(block: Block | str | None) -> Block | str | None:
    """What the flow hands its tasks: a saved block's slug (``aws-credentials/prod``) when the block is what
    is saved under that name, else the block itself (one made in code, or a loaded block changed since:
    its tasks must not reload the saved version and silently use other credentials)."""
    name = getattr(block, "_block_document_name", None) if isinstance(block, Block) else None
    if not name or block._is_anonymous:  # type: ignore[union-attr]
        return block
    if _secrets_shown(type(block).load(name)) != _secrets_shown(block):
        return block
    return f"{block.get_block_type_slug()}/{name}"


def _secrets_shown(block: Block) -> dict[str, Any]:
    return block.model_dump(mode="json", context={"include_secrets": True})


def storage_options_from_block(credentials: Block | str | None) -> dict[str, Any] | None:
    """fsspec storage options (s3fs, gcsfs) from a block or a saved block's slug, loaded in the task.

    ``None``: the environment's default credentials (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``...).
    """
    if credentials is None or credentials == "":
        return None
    block = _load(credentials) if isinstance(credentials, str) else credentials
    if isinstance(block, Secret):
        return _secret_options(block)
    if isinstance(block, S3Bucket):
        return _aws_options(block.credentials)
    if isinstance(block, (AwsCredentials, MinIOCredentials)):
        return _aws_options(block)
    if isinstance(block, GcsBucket):
        return _gcp_options(block.gcp_credentials)
    if isinstance(block, GcpCredentials):
        return _gcp_options(block)
    raise UsageError(f"credentials: a {type(block).__name__} block holds no storage credentials; use {_SLUGS}")


def _load(slug: str) -> Block:
    kind, _, name = slug.partition("/")
    if not kind or not name:
        raise UsageError(f"credentials block {slug!r}: expected {_SLUGS}")
    try:
        block_type = Block.get_block_class_from_key(kind)
    except (KeyError, UnknownBlockType):
        raise UsageError(f"credentials block {slug!r}: unknown block type {kind!r}; expected {_SLUGS}") from None
    if not issubclass(block_type, _ACCEPTED):
        raise UsageError(f"credentials block {slug!r}: a {kind} block holds no storage credentials; use {_SLUGS}")
    try:
        return block_type.load(name)
    except ValueError as exc:  # Prefect: "Unable to find block document named ..."
        raise UsageError(f"credentials block {slug!r}: {exc}") from None


def _secret_options(secret: Secret) -> dict[str, Any]:
    value = secret.get()
    try:
        options = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise UsageError(f"secret block: not JSON ({exc.msg} at character {exc.pos}); it must hold a JSON "
                         "object of fsspec storage options") from None
    if not isinstance(options, dict):
        raise UsageError("secret block: it must hold a JSON object of fsspec storage options, "
                         f"found {type(options).__name__}")
    return options


def _aws_options(creds: AwsCredentials | MinIOCredentials) -> dict[str, Any]:
    """s3fs options. An assumed role is resolved here into temporary keys (boto3 calls STS)."""
    if isinstance(creds, MinIOCredentials):
        options: dict[str, Any] = {"key": creds.minio_root_user,
                                   "secret": creds.minio_root_password.get_secret_value()}
    elif creds.assume_role_arn:
        frozen = creds.get_boto3_session().get_credentials().get_frozen_credentials()
        options = {"key": frozen.access_key, "secret": frozen.secret_key, "token": frozen.token}
    else:
        options = {"key": creds.aws_access_key_id, "profile": creds.profile_name,
                   "secret": creds.aws_secret_access_key.get_secret_value() if creds.aws_secret_access_key else None,
                   "token": creds.aws_session_token}
    params = creds.aws_client_parameters
    client = {"region_name": creds.region_name, "endpoint_url": params.endpoint_url,
              "verify": str(params.verify_cert_path) if params.verify_cert_path else (False if params.verify is False else None)}
    options = {k: v for k, v in options.items() if v}
    if {k: v for k, v in client.items() if v is not None}:
        options["client_kwargs"] = {k: v for k, v in client.items() if v is not None}
    if params.use_ssl is False:
        options["use_ssl"] = False
    return options


def _gcp_options(creds: GcpCredentials) -> dict[str, Any]:
    """gcsfs options: the service account's key (info or file); none: Google's default credentials."""
    info = creds.service_account_info.get_secret_value() if creds.service_account_info else None
    token = info or (str(creds.service_account_file) if creds.service_account_file else None)
    return {k: v for k, v in {"token": token, "project": creds.project}.items() if v}
