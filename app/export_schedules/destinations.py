"""Sending one window's bytes to a schedule's destination: an S3 object, or one signed gzip POST.

- **S3** (aioboto3, the tenant's own credentials and region, its endpoint when given, path-style addressing
  there): the bytes are streamed into a multipart upload, ``PART_BYTES`` at a time, sent by a task of their own
  while the next ones are read (flat memory whatever the window's size); a window smaller than one part is one
  ``PutObject``. The object's key is the window's name, so running a window again replaces the object: never a
  second copy. A failed multipart upload is aborted.
- **HTTP**: the bytes are gzip-compressed into a temporary file (flat memory), then posted in one request with
  ``Content-Encoding: gzip``, ``X-Auditlog-Signature`` (the alerts' scheme, signed just before sending, with one
  ``v1`` over the gzip bytes as sent and one over the decompressed content: servers that undo the content
  coding before the application sees the body are common) and ``Idempotency-Key``/``X-Auditlog-Delivery``
  (the same value each time the window is sent, so a receiver can drop a repeat). Redirects are not followed;
  a 2xx within the timeouts is success.

Every address rule (``app.outbound.url_guard``) is checked again right before sending. Errors are reported as
short text with the destination's secrets scrubbed out (``DeliveryFailed``): they are stored in ``/runs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import IO, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from app.export_schedules.schemas import Destination, DestinationOut, HttpDestination, S3Destination
from app.outbound.signing import HEADER
from app.outbound.url_guard import UnsafeURL, check_url

__all__ = [
    "PART_BYTES",
    "RESERVED_HEADERS",
    "Delivered",
    "DeliveryFailed",
    "check_destination",
    "display",
    "gzip_to_file",
    "post_file",
    "s3_location",
    "secrets_of",
    "temp_file",
    "upload_s3",
]

PART_BYTES: Final = 8 * 1024 * 1024
"""Multipart part size (S3's minimum is 5 MiB)."""
QUEUED_PARTS: Final = 2
"""Parts waiting for the sender beside the one it sends: what an S3 delivery holds in memory besides one batch."""
HTTP_TIMEOUT: Final = httpx.Timeout(30.0, read=120.0, write=120.0)
RESERVED_HEADERS: Final = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "idempotency-key",
        "user-agent",
    }
)
"""Headers the service sets itself (and any ``x-auditlog-*``): an HTTP destination may not override them."""


class DeliveryFailed(Exception):
    """A delivery attempt failed; ``str()`` is safe to store and show (no credentials)."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message[:500])
        self.http_status = http_status


@dataclass(frozen=True)
class Delivered:
    bytes: int
    location: str
    http_status: int | None = None


def secrets_of(dest: Destination) -> list[str]:
    """Every secret value a destination holds (scrubbed from error texts)."""
    if isinstance(dest, S3Destination):
        return [dest.access_key_id, dest.secret_access_key]
    out = [v for v in (dest.headers or {}).values() if len(v) >= 4]
    parts = urlsplit(dest.url)
    out += [p for p in (parts.username, parts.password) if p]
    out += [v for _, v in parse_qsl(parts.query, keep_blank_values=False) if len(v) >= 4]
    return out


def _scrub(text: str, secret_values: list[str]) -> str:
    for value in sorted(secret_values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _display_url(url: str) -> str:
    """An http(s) URL without user info, query values masked, fragment dropped."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def display(dest: Destination) -> DestinationOut:
    """What responses show of a destination: never a credential."""
    if isinstance(dest, S3Destination):
        return DestinationOut(type="s3", url=dest.url, endpoint_url=dest.endpoint_url, region=dest.region)
    names = sorted(dest.headers) if dest.headers else None
    return DestinationOut(type="http", url=_display_url(dest.url), header_names=names)


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def s3_location(dest: S3Destination, name: str) -> tuple[str, str]:
    """The bucket and key of the object called ``name`` (``<prefix>/<name>``)."""
    bucket, prefix = _bucket_and_prefix(dest.url)
    return bucket, f"{prefix}/{name}" if prefix else name


async def check_destination(dest: Destination, *, allow_private: bool) -> None:
    """``UnsafeURL`` when the destination's URL (an S3 endpoint, an HTTP receiver) may not be used."""
    if isinstance(dest, S3Destination):
        if dest.endpoint_url is not None:
            await check_url(dest.endpoint_url, allow_private=allow_private)
        return
    await check_url(dest.url, allow_private=allow_private)


def _s3_client(dest: S3Destination) -> Any:
    import aioboto3
    from botocore.config import Config

    session = aioboto3.Session(
        aws_access_key_id=dest.access_key_id,
        aws_secret_access_key=dest.secret_access_key,
        region_name=dest.region or "us-east-1",
    )
    config = Config(
        connect_timeout=10,
        read_timeout=120,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if dest.endpoint_url else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=dest.endpoint_url, config=config)


def _s3_error(exc: Exception, dest: S3Destination) -> DeliveryFailed:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"S3 {exc.operation_name}: {error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        return DeliveryFailed(_scrub(text, secrets_of(dest)), http_status=status)
    return DeliveryFailed(_scrub(f"S3: {type(exc).__name__}: {exc}", secrets_of(dest)))


class _MultipartUpload:
    """One object's multipart upload, its parts sent by a task of their own while the caller produces the next
    ones (at most ``QUEUED_PARTS`` waiting): reading the window and uploading it overlap, and memory stays at a
    few parts."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str) -> None:
        self.s3, self.bucket, self.key, self.content_type = s3, bucket, key, content_type
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUED_PARTS)
        self._task: asyncio.Task[None] | None = None

    async def _send(self) -> None:
        while (body := await self._queue.get()) is not None:
            number = len(self.parts) + 1
            assert self.upload_id is not None
            part = await self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
            )
            self.parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def put(self, body: bytes | None) -> None:
        """Queue a part (``None``: no more parts), waiting while the queue is full; the sender's error, if any."""
        if self._task is None:
            made = await self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self.upload_id = made["UploadId"]
            self._task = asyncio.create_task(self._send(), name=f"s3-parts-{self.key}")
        putting = asyncio.ensure_future(self._queue.put(body))
        await asyncio.wait({putting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not putting.done():
            putting.cancel()
            self._task.result()  # the sender stopped: its error
            raise RuntimeError("the part sender stopped")

    async def complete(self) -> None:
        await self.put(None)
        assert self._task is not None
        await self._task
        await self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
        self.upload_id = None

    async def abort(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self.upload_id is not None:
            with contextlib.suppress(Exception):  # the upload's own error is the one to report
                await self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


async def upload_s3(
    dest: S3Destination,
    name: str,
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    allow_private: bool,
    after_upload: Callable[[], Awaitable[None]] | None = None,
) -> Delivered:
    """Stream ``chunks`` into the object ``<prefix>/<name>`` (replacing it). ``after_upload`` runs once the object
    is complete (a test seam: the moment between the upload and the bookkeeping)."""
    try:
        await check_destination(dest, allow_private=allow_private)
    except UnsafeURL as exc:
        raise DeliveryFailed(f"refused: endpoint_url {exc}") from None
    bucket, key = s3_location(dest, name)
    total = 0
    try:
        async with _s3_client(dest) as s3:
            buffer = bytearray()
            upload: _MultipartUpload | None = None
            try:
                async for chunk in chunks:
                    buffer += chunk
                    total += len(chunk)
                    while len(buffer) >= PART_BYTES:
                        upload = upload or _MultipartUpload(s3, bucket, key, content_type)
                        await upload.put(bytes(memoryview(buffer)[:PART_BYTES]))  # one copy, not two
                        del buffer[:PART_BYTES]
                if upload is None:
                    await s3.put_object(Bucket=bucket, Key=key, Body=bytes(buffer), ContentType=content_type)
                else:
                    if buffer:
                        await upload.put(bytes(buffer))
                    await upload.complete()
            except BaseException:
                if upload is not None:
                    await upload.abort()
                raise
    except DeliveryFailed:
        raise
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, (BotoCoreError, ClientError)):
            raise _s3_error(exc, dest) from None
        raise
    if after_upload is not None:
        await after_upload()
    return Delivered(bytes=total, location=f"s3://{bucket}/{key}")


async def gzip_to_file(chunks: AsyncIterator[bytes], out: IO[bytes]) -> int:
    """Compress ``chunks`` into ``out`` (gzip); returns the compressed size."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)

    def write(chunk: bytes | None) -> int:
        data = compressor.compress(chunk) if chunk is not None else compressor.flush()
        out.write(data)
        return len(data)

    size = 0
    async for chunk in chunks:  # compressing a batch takes a while: off the event loop
        size += await asyncio.to_thread(write, chunk)
    size += await asyncio.to_thread(write, None)
    await asyncio.to_thread(out.flush)
    return size


def _signature(secret: str, body: IO[bytes]) -> str:
    """``X-Auditlog-Signature`` of the gzip file ``body`` with two ``v1`` values (``app.outbound.signing``'s
    scheme, in which any ``v1`` may match): one over the compressed bytes as sent, one over the decompressed
    content, so a receiver verifies whether or not its server already undid ``Content-Encoding``."""
    t = int(time.time())
    prefix = f"{t}.".encode()
    raw = hmac.new(secret.encode(), prefix, hashlib.sha256)
    plain = hmac.new(secret.encode(), prefix, hashlib.sha256)
    inflate = zlib.decompressobj(31)
    body.seek(0)
    while block := body.read(1 << 20):
        raw.update(block)
        plain.update(inflate.decompress(block))
    plain.update(inflate.flush())
    body.seek(0)
    return f"t={t},v1={raw.hexdigest()},v1={plain.hexdigest()}"


async def post_file(
    dest: HttpDestination,
    body: IO[bytes],
    size: int,
    *,
    secret: str,
    content_type: str,
    headers: dict[str, str],
    allow_private: bool,
    after_upload: Callable[[], Awaitable[None]] | None = None,
) -> Delivered:
    """POST the gzip file ``body`` to the destination, signed; ``DeliveryFailed`` unless it answers 2xx."""
    try:
        await check_destination(dest, allow_private=allow_private)
    except UnsafeURL as exc:
        raise DeliveryFailed(f"refused: url {exc}") from None
    signature = await asyncio.to_thread(_signature, secret, body)
    sent = {
        **(dest.headers or {}),
        **headers,
        "Content-Type": content_type,
        "Content-Encoding": "gzip",
        "Content-Length": str(size),
        "User-Agent": "auditlog-export-schedules/1",
        HEADER: signature,
    }

    async def stream() -> AsyncIterator[bytes]:
        while block := await asyncio.to_thread(body.read, 1 << 20):
            yield block

    location = _display_url(dest.url)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        try:
            response = await client.post(dest.url, content=stream(), headers=sent)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(_scrub(f"{type(exc).__name__}: {exc}", secrets_of(dest))) from None
    if not 200 <= response.status_code < 300:
        note = " (redirects are not followed)" if 300 <= response.status_code < 400 else ""
        raise DeliveryFailed(f"HTTP {response.status_code}{note}", http_status=response.status_code)
    if after_upload is not None:
        await after_upload()
    return Delivered(bytes=size, location=location, http_status=response.status_code)


def temp_file() -> IO[bytes]:
    """A temporary file for an HTTP delivery's body (removed when closed)."""
    return tempfile.TemporaryFile(prefix="auditlog-export-")
