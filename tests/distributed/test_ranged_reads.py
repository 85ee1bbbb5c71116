"""The S3 store against a real endpoint: reading an object back by ranged GETs, seekable like a local file (how a
zip upload is opened), and what interrupted writes leave behind."""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid
import zipfile

import pytest

from pipeline.core.settings import Settings
from pipeline.core.storage import ObjectNotFound, S3Store
from pipeline.ingest.batch import ZipBatch

pytestmark = pytest.mark.distributed


@pytest.fixture
def store(s3_endpoint) -> S3Store:
    settings = Settings(
        s3_endpoint=s3_endpoint,
        s3_access_key=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        s3_secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    s3 = S3Store(f"dmp-ranged-{uuid.uuid4().hex[:8]}", settings)
    s3.ensure_ready()
    return s3


def test_a_ranged_reader_seeks_and_reads_like_a_local_file(store):
    data = os.urandom(3 * 1024 * 1024 + 17)
    store.put("inbox/blob", io.BytesIO(data))
    with store.open_ranged("inbox/blob") as handle:
        assert handle.seek(-17, io.SEEK_END) == len(data) - 17
        assert handle.read() == data[-17:]
        handle.seek(1_500_000)
        assert handle.read(10) == data[1_500_000:1_500_010]
        handle.seek(0)
        assert handle.read() == data


def test_a_zip_kept_in_the_store_is_read_without_a_local_copy(store):
    members = {f"doc-{n}.txt": os.urandom(50_000 + n) for n in range(20)}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.csv", "file\n")
        for name, data in members.items():
            zf.writestr(name, data)
    store.put("inbox/uploads/batch.zip", io.BytesIO(archive.getvalue()))
    with store.open_ranged("inbox/uploads/batch.zip") as handle:
        batch = ZipBatch(handle)
        assert batch.document_names() == sorted(members)
        for name, data in members.items():
            with batch.open(name) as member:
                assert member.read() == data


def test_a_missing_object_is_object_not_found(store):
    with pytest.raises(ObjectNotFound), store.open_ranged("inbox/nothing"):
        pass


def test_a_multipart_upload_never_completed_is_aborted_once_older_than_the_cut(store):
    started = store.client.create_multipart_upload(Bucket=store.bucket, Key="inbox/killed-mid-upload")
    part = {"Bucket": store.bucket, "Key": "inbox/killed-mid-upload", "UploadId": started["UploadId"], "PartNumber": 1}
    store.client.upload_part(**part, Body=b"%PDF-1.4 plaintext" * 1000)
    # The time the store itself gives the upload (moto_server gives every upload a fixed date of its own).
    (upload,) = store.client.list_multipart_uploads(Bucket=store.bucket)["Uploads"]
    assert store.purge_interrupted(upload["Initiated"]) == 0  # not older than the cut: maybe still going on
    assert store.purge_interrupted(upload["Initiated"] + dt.timedelta(seconds=1)) == 1
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_objects_deleted_one_or_many_at_a_time_are_gone_and_deleting_a_missing_one_is_no_error(store):
    for key in ("inbox/packs/a", "inbox/b", "inbox/c"):
        store.put(key, io.BytesIO(b"bytes"))
    store.delete_many(["inbox/packs/a"])  # one key: a plain DELETE
    store.delete_many(["inbox/b", "inbox/c"])  # several: one DeleteObjects
    store.delete_many(["inbox/packs/a"])
    store.delete("inbox/never-there")
    assert not any(store.exists(key) for key in ("inbox/packs/a", "inbox/b", "inbox/c"))
