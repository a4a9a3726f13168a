"""The flow's ``credentials`` parameter: Prefect credential blocks (AWS, S3 bucket, GCP, GCS bucket, Secret)
against moto S3 and the GCS emulator, in-process against a real (temporary) Prefect API. The UI's block
picker itself is exercised by tests/test_ui.py."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from servers import clear_fs_caches, upload_dir

from warmstart.examples import EXAMPLE_RULES, write_example_set

pytestmark = [pytest.mark.integration]

SECRET = "SECRET-never-shown-41c7"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example_set(tmp_path_factory.mktemp("example"))


def run(**fields):
    from warmstart.flows.warm_start import warm_start

    return warm_start(rules=EXAMPLE_RULES, return_state=True, **fields)


def moto_aws(s3_server):
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    return AwsCredentials(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1",
                          aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint_url))


@pytest.fixture
def on_s3(example, s3_server, s3_bucket):
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    upload_dir(fs, Path(example.source), f"{s3_bucket}/pretrained")
    clear_fs_caches()
    return fs


def stored_texts(flow_run_id):
    """The run's parameters and every task run's recorded inputs and parameters, as the API stores them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [json.dumps(run.parameters, default=str), *(json.dumps(t.model_dump(mode="json")) for t in tasks)]


def test_a_saved_s3_bucket_block_lends_its_credentials(prefect_api, example, s3_server, s3_bucket, on_s3):
    from prefect_aws import S3Bucket

    S3Bucket(bucket_name=s3_bucket.removeprefix("s3://"), credentials=moto_aws(s3_server)).save("models", overwrite=True)
    state = run(source=f"{s3_bucket}/pretrained", target=example.target, output=f"{s3_bucket}/warm",
                credentials=S3Bucket.load("models"))
    assert state.is_completed(), state.message
    assert on_s3.exists(f"{s3_bucket}/warm/warmstart.json")


def test_a_saved_block_travels_by_name_and_its_secret_is_not_stored(prefect_api, example, s3_server, s3_bucket,
                                                                   on_s3):
    from prefect_aws import AwsCredentials

    # moto accepts any secret; the point is where this string could end up.
    block = moto_aws(s3_server).model_copy(update={"aws_secret_access_key": SECRET})
    block.save("moto-secret", overwrite=True)
    state = run(source=f"{s3_bucket}/pretrained", target=example.target, output=f"{s3_bucket}/warm",
                credentials=AwsCredentials.load("moto-secret"))
    assert state.is_completed(), state.message
    texts = stored_texts(state.state_details.flow_run_id)
    assert not [t for t in texts if SECRET in t]


def test_a_loaded_block_changed_in_code_is_used_as_changed(prefect_api, example, s3_server, s3_bucket, on_s3):
    """Saved with an endpoint that answers nothing, loaded, pointed at moto in code: the tasks must use the
    block they were given, not reload the saved one by name."""
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    stale = moto_aws(s3_server).model_copy(update={
        "aws_client_parameters": AwsClientParameters(endpoint_url="http://127.0.0.1:9")})
    stale.save("moto-stale", overwrite=True)
    block = AwsCredentials.load("moto-stale")
    block.aws_client_parameters = AwsClientParameters(endpoint_url=s3_server.endpoint_url)
    state = run(source=f"{s3_bucket}/pretrained", target=example.target, output=f"{s3_bucket}/warm",
                credentials=block)
    assert state.is_completed(), state.message
    assert on_s3.exists(f"{s3_bucket}/warm/warmstart.json")

def test_an_unsaved_block_made_in_code_works(prefect_api, example, s3_server, s3_bucket, on_s3):
    state = run(source=f"{s3_bucket}/pretrained", target=example.target, output=f"{s3_bucket}/warm",
                credentials=moto_aws(s3_server))
    assert state.is_completed(), state.message


def test_a_secret_block_of_storage_options(prefect_api, example, s3_server, s3_bucket, on_s3, tmp_path):
    from prefect.blocks.system import Secret

    Secret(value=json.dumps(s3_server.storage_options())).save("s3-options", overwrite=True)
    state = run(source=f"{s3_bucket}/pretrained", target=example.target, output=str(tmp_path / "out"),
                credentials=Secret.load("s3-options"))
    assert state.is_completed(), state.message
    assert (tmp_path / "out" / "warmstart.json").exists()


def service_account_info() -> dict:
    """A well-formed service-account key (a fresh RSA key): prefect-gcp parses it when the block is made.
    Using it needs Google's token endpoint, which no test here can reach; the mapping is what is checked."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem,
            "client_email": "warm@p.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}


@pytest.mark.parametrize("kind", ["gcp-credentials", "gcs-bucket"])
def test_a_service_account_key_becomes_the_gcsfs_token(prefect_api, kind):
    from prefect_gcp import GcpCredentials, GcsBucket

    from warmstart.tasks.credentials import storage_options_from_block

    info = service_account_info()
    creds = GcpCredentials(service_account_info=info, project="p")
    (creds if kind == "gcp-credentials" else GcsBucket(bucket="models", gcp_credentials=creds)).save("sa", overwrite=True)
    assert storage_options_from_block(f"{kind}/sa") == {"token": info, "project": "p"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"credentials_block": "secret/x"}, "not both"),
    ({"credentials_block": None, "credentials": {"aws_access_key_id": "k"}}, "expected a saved credentials block"),
])
def test_conflicting_or_guessed_credentials_fail_before_any_task(prefect_api, example, tmp_path, fields, message):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    Secret(value="{}").save("x", overwrite=True)
    params = {"credentials": Secret.load("x"), **fields}
    state = run(source=example.source, target=example.target, output=str(tmp_path / "out"), **params)
    assert state.is_failed() and message in state.message + str(state.result(raise_on_failure=False))
    if state.state_details.flow_run_id:
        with get_client(sync_client=True) as client:
            filt = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            assert client.read_task_runs(flow_run_filter=filt) == []


@pytest.mark.parametrize(("slug", "message"), [
    ("secret/not-json", "not JSON"),
    ("secret/a-list", "JSON object"),
    ("secret/never-saved", "never-saved"),
    ("no-such-type/x", "unknown block type"),
    ("aws-secret/x", "holds no storage credentials"),
    ("nothing", "expected"),
])
def test_bad_credentials_are_named(prefect_api, slug, message):
    from prefect.blocks.system import Secret

    from warmstart.tasks.credentials import storage_options_from_block
    from warmstart.errors import UsageError

    Secret(value="{not json").save("not-json", overwrite=True)
    Secret(value=["a"]).save("a-list", overwrite=True)
    with pytest.raises(UsageError, match=message):
        storage_options_from_block(slug)
