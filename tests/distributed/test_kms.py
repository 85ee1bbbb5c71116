"""The KMS key provider against a KMS HTTP endpoint (moto_server's KMS emulation, over the network)."""

from __future__ import annotations

import boto3
import pytest
from sqlalchemy import select

from pipeline.core.keys import KeyProviderError
from pipeline.core.kms import AwsKmsProvider
from pipeline.core.settings import Settings
from pipeline.documents.process import process_item
from pipeline.documents.stored import read_document
from pipeline.index.models import Document, RecordKey
from pipeline.ingest.intake import receive_batch
from pipeline.runtime import Runtime

pytestmark = pytest.mark.distributed
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
def kms_key(s3_endpoint, s3_server):
    if s3_server is None:
        pytest.skip("KMS tests use the suite's own moto_server")
    client = boto3.client("kms", endpoint_url=s3_endpoint, **CREDENTIALS)
    return lambda: client.create_key(Description="dmp test master key")["KeyMetadata"]["Arn"]


def _provider(endpoint: str, key_id: str) -> AwsKmsProvider:
    return AwsKmsProvider(key_id, endpoint, "us-east-1", "testing", "testing")


def test_a_record_key_wrapped_by_kms_unwraps_only_in_its_context(s3_endpoint, kms_key):
    provider = _provider(s3_endpoint, kms_key())
    wrapped = provider.wrap(b"r" * 32, "record:1|patient:1")
    assert b"r" * 32 not in wrapped.blob
    assert provider.unwrap(wrapped, "record:1|patient:1") == b"r" * 32
    with pytest.raises(KeyProviderError):
        provider.unwrap(wrapped, "record:2|patient:1")


def test_documents_sealed_under_a_kms_master_key_survive_its_rotation(s3_endpoint, kms_key, tmp_path):
    from pipeline.samples import generate_samples

    generate_samples(tmp_path / "batch", patients=2, documents=4, seed=4, bad=False)
    first, second = kms_key(), kms_key()
    settings = Settings(
        home=tmp_path / "home", kms_key_id=first, kms_endpoint=s3_endpoint, s3_access_key="testing", s3_secret_key="testing"
    )
    rt = Runtime.from_settings(settings, prepare=True)
    sent: list[str] = []
    receive_batch(rt, tmp_path / "batch", "lab:KMS", sent.append)
    assert {process_item(rt, item_id) for item_id in sent} == {"indexed"}
    with rt.sessions() as session:
        documents = session.scalars(select(Document)).all()
        assert {row.master_key_id for row in session.scalars(select(RecordKey))} == {first}
    before = {d.id: b"".join(read_document(rt, d)) for d in documents}

    rotated = Runtime.from_settings(settings.model_copy(update={"kms_key_id": second}))
    assert rotated.record_keys.rewrap() == 2
    with rotated.sessions() as session:
        assert {row.master_key_id for row in session.scalars(select(RecordKey))} == {second}
    assert {d.id: b"".join(read_document(rotated, d)) for d in documents} == before
