"""Presigned URLs signed without the client's machinery (pipeline/core/presign.py) are the client's own SigV4 presigned
URLs, byte for byte."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import Credentials

from pipeline.core.presign import UrlSigner
from pipeline.core.settings import Settings
from pipeline.core.storage import S3Store

NOW = dt.datetime(2026, 11, 28, 4, 30, 15, tzinfo=dt.UTC)


def _botocore_url(monkeypatch: pytest.MonkeyPatch, endpoint: str | None, region: str, method: str, bucket: str, key: str) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: NOW.replace(tzinfo=None))
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="wJalr/XUtnFEMI+K7MDENG",
                          region_name=region, config=Config(signature_version="s3v4"))  # fmt: skip
    return client.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        ("http://127.0.0.1:5000", "us-east-1"),
        ("https://minio.example.org", "eu-west-3"),
        (None, "eu-west-3"),
        ("http://[::1]:9000", "us-east-1"),
    ],
)
@pytest.mark.parametrize(("method", "operation"), [("GET", "get_object"), ("PUT", "put_object"), ("HEAD", "head_object")])
@pytest.mark.parametrize("key", ["docs/0b9e2c1e-4d7f-4a51-9a43-2f0c2d1e5b6a.1", "inbox/packs/a b+c=d&é~x", "quarantine/x"])
def test_signed_url_is_botocores(
    monkeypatch: pytest.MonkeyPatch, endpoint: str | None, region: str, method: str, operation: str, key: str
) -> None:
    expected = _botocore_url(monkeypatch, endpoint, region, operation, "dmp-bucket", key)
    bucket_url = _botocore_url(monkeypatch, endpoint, region, "get_object", "dmp-bucket", "k").split("?", 1)[0].removesuffix("k")
    signer = UrlSigner(bucket_url, Credentials("AKIDEXAMPLE", "wJalr/XUtnFEMI+K7MDENG"), region, 3600)
    assert signer.url(method, key) == expected


def test_the_s3_store_signs_its_urls_with_its_sessions_credentials(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, s3_endpoint="http://127.0.0.1:5000", s3_access_key="AK", s3_secret_key="SK")
    store = S3Store("dmp-bucket", settings)
    assert store._url("get_object", "docs/x").startswith("http://127.0.0.1:5000/dmp-bucket/docs/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert store._signer is not None and "X-Amz-Credential=AK%2F" in store._url("put_object", "docs/x")
