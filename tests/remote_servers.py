"""Real servers for the remote-storage tests, started on 127.0.0.1 on free ports.

* S3: moto's standalone server (``moto[server]``), spoken to over HTTP by boto3 as a real S3.
* SFTP: Debian's OpenSSH ``sshd`` with a throwaway host key and user key.

Each is skipped when it cannot run here, unless ``DBBACKUP_REQUIRE_SERVERS`` is set (CI).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.database_servers import REQUIRE_SERVERS

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {seconds} s")


def unavailable(reason: str) -> None:
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason} (DBBACKUP_REQUIRE_SERVERS is set)")
    pytest.skip(reason)


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    def storage_options(self, bucket: str, **extra) -> dict:
        return {
            "bucket_name": bucket,
            "endpoint_url": self.endpoint,
            "access_key": "test",
            "secret_key": "test",
            "region_name": "us-east-1",
            **extra,
        }


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import storages.backends.s3  # noqa: F401
    except ImportError as exc:
        unavailable(f"the S3 tests need moto[server], boto3 and django-storages: {exc}")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "moto_server")
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class SftpServer:
    port: int
    key: Path
    user: str

    def storage_options(self, root: Path) -> dict:
        return {
            "host": "127.0.0.1",
            "root_path": str(root),
            "params": {
                "port": self.port,
                "username": self.user,
                "key_filename": str(self.key),
                "look_for_keys": False,
                "allow_agent": False,
            },
        }


@contextlib.contextmanager
def sftp_server(workdir: Path) -> Iterator[SftpServer]:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        unavailable("the SFTP tests need OpenSSH's sshd and ssh-keygen (apt install openssh-server)")
    try:
        import paramiko  # noqa: F401
        import storages.backends.sftpstorage  # noqa: F401
    except ImportError as exc:
        unavailable(f"the SFTP tests need paramiko and django-storages: {exc}")
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name)], check=True)
    (workdir / "authorized_keys").write_text((workdir / "user_key.pub").read_text())
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
        f"PidFile {workdir / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process, "sshd")
        yield SftpServer(port, workdir / "user_key", getpass.getuser())
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class FtpServer:
    port: int
    root: Path

    def storage_options(self, path: str = "") -> dict:
        return {"location": f"ftp://dbbackup:secret@127.0.0.1:{self.port}/{path}"}


@contextlib.contextmanager
def ftp_server(root: Path) -> Iterator[FtpServer]:
    """pyftpdlib serving ``root`` read-write to user ``dbbackup`` (password ``secret``)."""
    try:
        import pyftpdlib  # noqa: F401
        import storages.backends.ftp  # noqa: F401
    except ImportError as exc:
        unavailable(f"the FTP tests need pyftpdlib and django-storages: {exc}")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyftpdlib",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "-d",
            str(root),
            "-u",
            "dbbackup",
            "-P",
            "secret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "pyftpdlib")
        yield FtpServer(port, root)
    finally:
        process.terminate()
        process.wait(timeout=30)


AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class AzuriteServer:
    port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def storage_options(self, container: str) -> dict:
        return {"connection_string": self.connection_string, "azure_container": container}


def azurite_executable() -> Path | None:
    """Azurite's blob server, installed from the npm registry into a cache folder on first use.

    ``DBBACKUP_AZURITE`` may name an installed ``azurite-blob``; the cache is
    ``$DBBACKUP_TEST_CACHE`` (default ``$XDG_CACHE_HOME/dbbackup-tests``, ``~/.cache/...``).
    """
    if os.environ.get("DBBACKUP_AZURITE"):
        return Path(os.environ["DBBACKUP_AZURITE"])
    cache_root = os.environ.get("DBBACKUP_TEST_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dbbackup-tests"
    )
    cache = Path(cache_root) / "azurite"
    executable = cache / "node_modules" / ".bin" / "azurite-blob"
    if executable.exists():
        return executable
    if shutil.which("npm") is None or shutil.which("node") is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", "azurite@3"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "npm_config_cache": str(cache / "npm-cache")},  # HOME may be unset (tox)
    )
    return executable if result.returncode == 0 and executable.exists() else None


@contextlib.contextmanager
def azurite_server(workdir: Path) -> Iterator[AzuriteServer]:
    """Azurite's blob service on 127.0.0.1, its data in ``workdir``."""
    try:
        import azure.storage.blob  # noqa: F401
        import storages.backends.azure_storage  # noqa: F401
    except ImportError as exc:
        unavailable(f"the Azure tests need azure-storage-blob and django-storages: {exc}")
    executable = azurite_executable()
    if executable is None:
        unavailable("the Azure tests need Azurite: node and npm to install it (npm install azurite)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            *(str(executable), "--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *(
                "--location",
                str(workdir),
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "azurite-blob")
        yield AzuriteServer(port)
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class GcsServer:
    endpoint: str

    def client(self):
        from google.cloud import storage as gcs

        return gcs.Client(project="test")

    def storage_options(self, bucket: str) -> dict:
        return {"bucket_name": bucket, "project_id": "test"}


@contextlib.contextmanager
def gcs_server(workdir: Path) -> Iterator[GcsServer]:
    """gcp-storage-emulator (from PyPI) on 127.0.0.1; clients find it via STORAGE_EMULATOR_HOST,
    which the caller sets."""
    try:
        import gcp_storage_emulator  # noqa: F401
        import google.cloud.storage  # noqa: F401
        import storages.backends.gcloud  # noqa: F401
    except ImportError as exc:
        unavailable(f"the Google Cloud tests need gcp-storage-emulator, google-cloud-storage: {exc}")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "-d", str(workdir), "start"),
            *("--port", str(port), "-H", "127.0.0.1", "-q"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, "gcp-storage-emulator")
        yield GcsServer(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)
