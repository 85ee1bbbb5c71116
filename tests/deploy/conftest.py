"""The deployment tests reuse the distributed suite's S3 endpoint (moto_server, or DMP_TEST_S3_ENDPOINT)."""

from tests.distributed.conftest import s3_endpoint, s3_server  # noqa: F401
