"""Artifacts in S3 or an S3-compatible server (MinIO, moto). A PUT replaces an object whole, so each write is atomic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ltr_pipeline.errors import ConfigError, LtrError, ObjectNotFound, RegistryError
from ltr_pipeline.storage.base import ArtifactStore

if TYPE_CHECKING:
    from ltr_pipeline.config import Settings

try:
    import boto3
    import botocore.config
    import botocore.exceptions as bexc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError("the S3 registry needs boto3: pip install 'ltr-pipeline[s3]'") from exc


class S3Store(ArtifactStore):
    def __init__(self, bucket: str, prefix: str, client: Any, endpoint: str | None = None) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.uri = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint}" if endpoint else "")

    @classmethod
    def from_uri(cls, uri: str, settings: Settings) -> S3Store:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"registry URI {uri!r} names no bucket: use s3://bucket/prefix")
        creds = {}
        if settings.aws_access_key_id and settings.aws_secret_access_key:
            creds = {"aws_access_key_id": settings.aws_access_key_id.get_secret_value(),
                     "aws_secret_access_key": settings.aws_secret_access_key.get_secret_value()}
        config = botocore.config.Config(
            connect_timeout=settings.s3_timeout_seconds, read_timeout=settings.s3_timeout_seconds,
            retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        )
        client = boto3.session.Session().client(
            "s3", endpoint_url=settings.s3_endpoint, region_name=settings.s3_region, config=config, **creds
        )
        return cls(bucket, prefix, client, settings.s3_endpoint)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> LtrError:
        if isinstance(exc, bexc.NoCredentialsError):
            return ConfigError(f"no S3 credentials to {action} {key}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, bexc.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return RegistryError(f"bucket {self.bucket!r} does not exist: create it or fix S3_BUCKET")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                return RegistryError(f"S3 refused to {action} {key} ({code}): check the credentials and policy")
        if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectTimeoutError | bexc.ReadTimeoutError):
            return RegistryError(f"cannot reach S3 to {action} {key}: {exc}")
        return RegistryError(f"S3 failed to {action} {key} in {self.uri}: {exc}")

    @staticmethod
    def _missing(exc: Exception) -> bool:
        return isinstance(exc, bexc.ClientError) and exc.response.get("Error", {}).get("Code") in (
            "NoSuchKey", "404", "NotFound")

    def _get(self, key: str, **extra: Any) -> dict[str, Any]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
            response["data"] = response["Body"].read()
            return dict(response)
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            if self._missing(exc):
                raise ObjectNotFound(f"{key} not found in {self.uri}") from None
            if isinstance(exc, bexc.ClientError) and \
                    exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
                return {"not_modified": True}
            raise self._fail("read", key, exc) from exc

    def read(self, key: str) -> bytes:
        return bytes(self._get(key)["data"])

    def read_if_changed(self, key: str, tag: str | None) -> tuple[bytes, str] | None:
        # A conditional GET: S3 answers 304 with no body when the ETag still matches.
        response = self._get(key, **({"IfNoneMatch": tag} if tag else {}))
        if response.get("not_modified"):
            return None
        return bytes(response["data"]), str(response["ETag"])

    def write(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            raise self._fail("write", key, exc) from exc

    def create(self, key: str, data: bytes) -> bool:
        """A conditional PUT (If-None-Match: *): S3, MinIO and moto answer 412 when the key exists."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            if isinstance(exc, bexc.ClientError) and exc.response.get("Error", {}).get("Code") in (
                    "PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise self._fail("write", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            if self._missing(exc):
                return False
            raise self._fail("check", key, exc) from exc

    def list(self, prefix: str = "") -> list[str]:
        root = self._key("")
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                              Prefix=self._key(prefix)):
                keys.extend(obj["Key"][len(root):] for obj in page.get("Contents", []))
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            raise self._fail("list", prefix or "/", exc) from exc
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        try:
            for start in range(0, len(keys), 1000):
                batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            raise self._fail("delete", prefix, exc) from exc
        return len(keys)
