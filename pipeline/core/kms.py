"""Master keys held by AWS KMS (or any endpoint speaking its API) instead of the key file.

The KMS key never leaves the service: record keys are sent to it to be wrapped (Encrypt) and
unwrapped (Decrypt), with an encryption context naming the record by id, which KMS binds to the
ciphertext and records in its own audit log. Key ids are KMS key ids or ARNs; rotating means
creating a new KMS key, naming it in DMP_KMS_KEY_ID and running `dmp keys rotate`.

Other services plug in the same way, behind `pipeline.core.keys.KeyProvider`:
- HashiCorp Vault transit: `wrap` = POST transit/encrypt/<name> (with `context`), `unwrap` =
  transit/decrypt/<name>; the key version travels inside the `vault:vN:` ciphertext, and
  `transit/keys/<name>/rotate` + `dmp keys rotate` (or transit/rewrap) renews it.
- MinIO KES: `wrap` = POST /v1/key/encrypt/<name> with the context as associated data,
  `unwrap` = /v1/key/decrypt/<name>.
"""

from __future__ import annotations

from types import TracebackType

from pipeline.core.keys import KeyProviderError, WrappedKey
from pipeline.core.reasons import Transient


class AwsKmsProvider:
    """KeyProvider over AWS KMS Encrypt/Decrypt (tested against moto_server's KMS endpoint)."""

    def __init__(
        self,
        key_id: str,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.active_id = key_id
        self.client = boto3.client(
            "kms",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def wrap(self, key: bytes, context: str) -> WrappedKey:
        with _kms_errors("encrypt"):
            answer = self.client.encrypt(KeyId=self.active_id, Plaintext=key, EncryptionContext={"dmp": context})
        return WrappedKey(self.active_id, answer["CiphertextBlob"])

    def unwrap(self, wrapped: WrappedKey, context: str) -> bytes:
        with _kms_errors("decrypt"):
            answer = self.client.decrypt(KeyId=wrapped.key_id, CiphertextBlob=wrapped.blob, EncryptionContext={"dmp": context})
        return answer["Plaintext"]


class _kms_errors:
    """Network and server failures are Transient; a refused decryption is a KeyProviderError."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500:
                raise Transient(f"kms_{self.operation}_failed") from None
            raise KeyProviderError(f"KMS refused {self.operation}: {exc.response.get('Error', {}).get('Code')}") from None
        if isinstance(exc, BotoCoreError):
            raise Transient(f"kms_{self.operation}_failed") from None
