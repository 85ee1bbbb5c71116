"""Object storage: one interface, a file-system store (embedded) and an S3 store (MinIO, S3, moto).

Areas (key prefixes): `inbox/` raw bytes waiting for a worker, `docs/` sealed documents,
`quarantine/` rejected documents kept encrypted for the sender's support.
Writes are streamed and atomic: a reader never sees half an object.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from pipeline.core.presign import UrlSigner
from pipeline.core.reasons import Transient
from pipeline.core.settings import Settings
from pipeline.core.streams import Readable, copy_stream

if TYPE_CHECKING:
    import urllib3
    from _typeshed import WriteableBuffer

COPY_CHUNK = 1024 * 1024
# A ranged reader fetches at least this much per GET: a zip's small header reads share one request.
RANGE_BYTES = 1024 * 1024
# Lifetime of the presigned URLs the S3 store reads through (never handed out): a long zip read keeps its URL.
URL_SECONDS = 3600
# Objects up to this size go in one plain PUT; larger ones in 8 MiB multipart parts.
SINGLE_PUT_BYTES = 8 * 1024 * 1024
# Keys per DeleteObjects request (S3's limit).
DELETE_BATCH = 1000
# The HTTP method of each operation the store presigns.
_HTTP_METHODS = {"get_object": "GET", "put_object": "PUT", "head_object": "HEAD", "delete_object": "DELETE"}


class ObjectNotFound(Exception):
    """The key does not exist in the store."""


class ObjectStore(Protocol):
    """What the pipeline needs from an object store."""

    def ensure_ready(self) -> None: ...

    def put(self, key: str, source: Readable) -> None: ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]: ...

    def open_ranged(self, key: str, block_bytes: int = RANGE_BYTES, size: int | None = None) -> AbstractContextManager[BinaryIO]:
        """A seekable reader (a zip upload is read from its end): ranged GETs of at least `block_bytes`
        (bounded by the object's end), never a local copy. `size`, when the caller knows it, spares a HEAD."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_many(self, keys: Collection[str]) -> None:
        """Delete every key (missing ones included) in as few requests as the store allows."""
        ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str = "") -> Iterator[str]: ...

    def purge_interrupted(self, before: dt.datetime) -> int:
        """Remove what writes interrupted before `before` left behind (they may hold plaintext); how many."""
        ...


class FileStore:
    """Objects as files under a root folder; writes go to a temp file then an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("object key escapes the store")
        return path

    def ensure_ready(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def put(self, key: str, source: Readable) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                copy_stream(source, out.write, COPY_CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        with handle:
            yield handle

    def open_ranged(self, key: str, block_bytes: int = RANGE_BYTES, size: int | None = None) -> AbstractContextManager[BinaryIO]:
        return self.open(key)  # a file is seekable as it is

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_many(self, keys: Collection[str]) -> None:
        for key in keys:
            self.delete(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".part-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def purge_interrupted(self, before: dt.datetime) -> int:
        """The temporary files of writes killed before their rename (a `put` cleans up after any failure it lives through)."""
        if not self.root.exists():
            return 0
        stale = [path for path in self.root.rglob(".part-*") if path.stat().st_mtime < before.timestamp()]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


class S3Store:
    """Objects in an S3 bucket through boto3: multipart streaming uploads, streamed reads."""

    def __init__(self, bucket: str, settings: Settings) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        session = boto3.session.Session(
            aws_access_key_id=settings.s3_access_key, aws_secret_access_key=settings.s3_secret_key, region_name=settings.s3_region
        )
        self.client = session.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            # Fail fast and let the pipeline's own retries (with backoff, counted) take over.
            config=Config(
                connect_timeout=settings.s3_timeout_seconds,
                read_timeout=settings.s3_timeout_seconds,
                retries={"max_attempts": 2, "mode": "standard"},
                max_pool_connections=settings.s3_max_connections,
                # SigV4 for presigned URLs too (botocore's default there is still SigV2), as UrlSigner signs them.
                signature_version="s3v4",
            ),
        )
        # URLs signed by botocore's signer without the client's machinery (pipeline/core/presign.py), for the bucket URL
        # the client addresses; without credentials (none configured anywhere), the client's own presigning.
        self._signer: UrlSigner | None = None
        if (credentials := session.get_credentials()) is not None:
            sample = self.client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=URL_SECONDS)
            bucket_url = sample.split("?", 1)[0].removesuffix("k")
            self._signer = UrlSigner(bucket_url, credentials, self.client.meta.region_name, URL_SECONDS)
        import urllib3

        self._http = urllib3.PoolManager(maxsize=settings.s3_max_connections, block=False)
        self._timeout = urllib3.Timeout(connect=settings.s3_timeout_seconds, read=settings.s3_timeout_seconds)
        self._retries = urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504), raise_on_status=False)
        # One part in memory at a time, no thread pool: memory stays flat for a 2 GB file.
        self.transfer = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, use_threads=False)

    def ensure_ready(self) -> None:
        with _s3_errors("ensure_ready"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, source: Readable) -> None:
        """One plain PUT on a presigned URL for an object of up to SINGLE_PUT_BYTES (most documents);
        boto3's multipart transfer for a larger one, its first bytes included."""
        head = _read_up_to(source, SINGLE_PUT_BYTES + 1)
        if len(head) <= SINGLE_PUT_BYTES:
            self._request("PUT", self._url("put_object", key), key, body=head, operation="put").release_conn()
            return
        with _s3_errors("put"):
            # boto3 only calls read(); its stubs ask for a whole IO.
            self.client.upload_fileobj(_Prefixed(head, source), self.bucket, key, Config=self.transfer)  # type: ignore[arg-type]

    def _url(self, method: str, key: str) -> str:
        if self._signer is not None:
            return self._signer.url(_HTTP_METHODS[method], key)
        return self.client.generate_presigned_url(method, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=URL_SECONDS)

    def _request(
        self,
        method: str,
        url: str,
        key: str,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        body: bytes | None = None,
        operation: str = "get",
    ) -> urllib3.BaseHTTPResponse:
        """One plain HTTP request on a presigned URL; 404 is ObjectNotFound, other failures Transient.

        Why not botocore's own calls: a full botocore call costs about 1.1 ms of CPU per object (event
        hooks, response parsing) against 0.5 ms for the signature alone plus a plain request, and every
        document read pays it (measured by `bench read`)."""
        with _s3_errors(operation):
            response = self._http.request(
                method, url, headers=headers, body=body, preload_content=not stream, retries=self._retries, timeout=self._timeout
            )
        if response.status in (200, 204, 206):  # 204: a DELETE's answer
            return response
        response.release_conn()
        if response.status == 404:
            raise ObjectNotFound(key)
        failed = response.status >= 500 or response.status in (408, 429)
        code = f"{operation}_failed" if failed else f"{operation}_refused_{response.status}"
        raise Transient(f"storage_{code}")

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """Stream an object (one GET on a presigned URL)."""
        response = self._request("GET", self._url("get_object", key), key, stream=True)
        try:
            with _s3_errors("read"):
                # urllib3's response reads like a binary file (read, readinto, close) but does not derive from BinaryIO.
                yield response  # type: ignore[misc]
        finally:
            response.release_conn()

    @contextmanager
    def open_ranged(self, key: str, block_bytes: int = RANGE_BYTES, size: int | None = None) -> Iterator[BinaryIO]:
        if size is None:
            size = int(self._request("HEAD", self._url("head_object", key), key).headers["Content-Length"])
        with io.BufferedReader(_RangedObject(self, key, size, self._url("get_object", key)), buffer_size=block_bytes) as reader:
            yield reader

    def delete(self, key: str) -> None:
        """One plain DELETE on a presigned URL (S3 answers 204 whether the object was there or not)."""
        self._request("DELETE", self._url("delete_object", key), key, operation="delete").release_conn()

    def delete_many(self, keys: Collection[str]) -> None:
        """One DeleteObjects request per thousand keys (a micro-batch's inbox copies: one request); a single
        key (most often a message's inbox pack) is one plain DELETE, the same request without botocore's
        machinery nor an XML body on either side (about 0.25 ms of a worker's CPU against 0.9)."""
        ordered = sorted(set(keys))
        if len(ordered) == 1:
            self.delete(ordered[0])
            return
        for start in range(0, len(ordered), DELETE_BATCH):
            objects = [{"Key": key} for key in ordered[start : start + DELETE_BATCH]]
            with _s3_errors("delete"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})  # type: ignore[typeddict-item]
            if answer.get("Errors"):
                raise Transient("storage_delete_failed")

    def exists(self, key: str) -> bool:
        with _s3_errors("head"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                return True
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        with _s3_errors("list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for entry in page.get("Contents", []):
                    yield entry["Key"]

    def purge_interrupted(self, before: dt.datetime) -> int:
        """Abort the multipart uploads started before `before` and never completed: their parts are stored (and
        billed) until aborted, out of every listing. A bucket lifecycle rule may do the same; this does not rely on one."""
        aborted = 0
        with _s3_errors("list"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < before:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                        aborted += 1
        return aborted


def _read_up_to(source: Readable, limit: int) -> bytes:
    """At most `limit` bytes of `source`, fewer only at its end."""
    parts: list[bytes] = []
    wanted = limit
    while wanted > 0 and (chunk := source.read(wanted)):
        parts.append(chunk)
        wanted -= len(chunk)
    return b"".join(parts)


class _Prefixed:
    """`head`, then what is left of `rest`: a stream whose first bytes were read already."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self.head, self.rest = memoryview(head), rest

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, fewer only at the end (a multipart upload's parts must be whole)."""
        if size < 0:
            rest, self.head = bytes(self.head) + self.rest.read(), memoryview(b"")
            return rest
        taken = bytes(self.head[:size])
        self.head = self.head[len(taken) :]
        return taken + _read_up_to(self.rest, size - len(taken))


class SeekableView(io.RawIOBase):
    """A read-only, seekable view of `size` bytes held elsewhere; subclasses say how `readinto` gets them."""

    def __init__(self, size: int) -> None:
        self.size, self.position = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position


class _RangedObject(SeekableView):
    """A view of an S3 object: each read is one ranged GET on a presigned URL."""

    def __init__(self, store: S3Store, key: str, size: int, url: str) -> None:
        super().__init__(size)
        self.store, self.key, self.url = store, key, url

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        if self.position >= self.size or not len(view):
            return 0
        last = min(self.position + len(view), self.size) - 1
        data = self.store._request("GET", self.url, self.key, headers={"Range": f"bytes={self.position}-{last}"}).data
        view[: len(data)] = data
        self.position += len(data)
        return len(data)


@contextmanager
def _s3_errors(operation: str) -> Iterator[None]:
    """Turn network and server-side S3 failures into Transient (retried); keep the rest."""
    import urllib3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or exc.response.get("Error", {}).get("Code") in ("SlowDown", "RequestTimeout"):
            raise Transient(f"storage_{operation}_failed") from None
        raise
    except (BotoCoreError, S3UploadFailedError, ConnectionError, urllib3.exceptions.HTTPError):
        raise Transient(f"storage_{operation}_failed") from None


def open_store(settings: Settings) -> ObjectStore:
    """The store named by DMP_STORAGE_URL (s3://bucket or file:///path), file store by default."""
    url = urlparse(settings.resolved_storage_url())
    if url.scheme == "s3":
        return S3Store(url.netloc, settings)
    if url.scheme == "file":
        return FileStore(Path(unquote(url.path)))
    raise ValueError(f"DMP_STORAGE_URL must be s3://bucket or file:///path, not {url.scheme}://")
