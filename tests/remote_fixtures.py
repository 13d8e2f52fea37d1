"""Fixtures for remote archives: one SeaweedFS for the whole session (it
takes about 10 s to start), a bucket, the AWS environment a mount daemon
inherits, and a range-capable HTTP server per test.
"""

import os
import uuid

import pytest

from remote_servers import CountingProxy, RangeServer, SeaweedFS, s3_client

# conftest star-imports this module: only the fixtures go there.
__all__ = ["seaweed", "s3", "http_server", "s3_proxy"]

BUCKET = "archfs-tests"


class S3Place:
    """Where a test keeps its objects: the endpoint, a bucket, a key prefix."""

    def __init__(self, endpoint: str, client, prefix: str):
        self.endpoint = endpoint
        self.client = client
        self.bucket = BUCKET
        self.prefix = prefix

    def url(self, name: str) -> str:
        return "s3://%s/%s%s" % (self.bucket, self.prefix, name)

    def key(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, data: bytes) -> str:
        return self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data)["ETag"]

    def put_file(self, name: str, path) -> str:
        with open(path, "rb") as f:
            return self.put(name, f.read())

    def get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()

    def head(self, name: str) -> dict:
        return self.client.head_object(Bucket=self.bucket, Key=self.key(name))

    def uploads(self, name: str) -> list:
        found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.key(name))
        return [u for u in found.get("Uploads") or [] if u["Key"] == self.key(name)]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A SeaweedFS S3 store on 127.0.0.1 for the session, with the test bucket."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        s3_client(server.endpoint).create_bucket(Bucket=BUCKET)
        yield server
    finally:
        server.stop()


def aws_environment(monkeypatch, endpoint: str) -> None:
    """Credentials and endpoint the standard AWS way, for the daemons to inherit;
    nothing from the user's own AWS configuration."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3(seaweed, monkeypatch):
    """An S3Place with a fresh key prefix; AWS_* set for the store."""
    aws_environment(monkeypatch, seaweed.endpoint)
    return S3Place(seaweed.endpoint, s3_client(seaweed.endpoint),
                   "t%s/" % uuid.uuid4().hex[:12])


@pytest.fixture
def s3_proxy(s3, monkeypatch):
    """A counting proxy in front of the store, which AWS_ENDPOINT_URL now names."""
    proxy = CountingProxy(int(s3.endpoint.rsplit(":", 1)[1])).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy
    proxy.stop()


@pytest.fixture
def http_server(tmp_path):
    """A range-capable HTTP server for the files of tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    server = RangeServer(root).start()
    yield server
    server.stop()
