"""A stand-in for mongodump and mongorestore: records what it was given, as a real tool sees it.

There is no MongoDB server or tool here. This script, installed on PATH under both names,
writes one JSON record per run to $FAKE_MONGO_LOG: its argv, the --config file's content, mode
and kind (read while it runs, as mongodump would: dbbackup hands it over as an inherited pipe,
/dev/fd/N, never as a file on disk), selected environment variables, and a digest
of its stdin. As mongodump it streams $FAKE_MONGO_ARCHIVE_SIZE bytes of archive to stdout,
pausing after the first MiB until $FAKE_MONGO_GO exists (so a test can prove the caller reads
while the tool still runs). $FAKE_MONGO_FAIL makes it fail like a real tool.
"""

import hashlib
import json
import os
import stat
import sys
import time

ARCHIVE_MAGIC = bytes.fromhex("6de29981")  # the mongodump archive header


def archive_bytes(size: int) -> bytes:
    block = hashlib.sha256(b"mongo").digest() * 32768  # 1 MiB
    data = ARCHIVE_MAGIC + block * (size // len(block) + 1)
    return data[:size]


def main() -> int:
    tool = os.path.basename(sys.argv[0])
    record = {
        "tool": tool,
        "argv": sys.argv[1:],
        "env": {k: v for k, v in os.environ.items() if "MONGO" in k},
    }
    config = next((arg.split("=", 1)[1] for arg in sys.argv[1:] if arg.startswith("--config=")), None)
    if config:
        record["config_mode"] = stat.S_IMODE(os.stat(config).st_mode)
        record["config_is_pipe"] = stat.S_ISFIFO(os.stat(config).st_mode)
        with open(config) as config_file:
            record["config"] = config_file.read()
    if os.environ.get("FAKE_MONGO_FAIL"):
        print(f"{tool}: error connecting to host: {os.environ['FAKE_MONGO_FAIL']}", file=sys.stderr)
        return 1
    if tool == "mongodump":
        data = archive_bytes(int(os.environ.get("FAKE_MONGO_ARCHIVE_SIZE", "3000000")))
        sys.stdout.buffer.write(data[: 1 << 20])
        sys.stdout.buffer.flush()
        go = os.environ.get("FAKE_MONGO_GO")
        deadline = time.monotonic() + 10
        while go and not os.path.exists(go):
            if time.monotonic() > deadline:
                print("mongodump: nobody read the first MiB while the tool ran", file=sys.stderr)
                return 3
            time.sleep(0.01)
        sys.stdout.buffer.write(data[1 << 20 :])
        record["sent_sha256"] = hashlib.sha256(data).hexdigest()
    else:
        received = sys.stdin.buffer.read()
        record["received_sha256"] = hashlib.sha256(received).hexdigest()
        record["received_size"] = len(received)
    with open(os.environ["FAKE_MONGO_LOG"], "a") as log:
        log.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
