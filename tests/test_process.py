"""dbbackup.process runs real processes here: python, sh and cat."""

import io
import os
import sys

import pytest

from dbbackup import process
from dbbackup.exceptions import CommandConnectorError, CorruptBackupError
from dbbackup.streams import DigestReader

PY = sys.executable


def command(code: str, **kwargs) -> process.Command:
    return process.Command(argv=[PY, "-c", code], **kwargs)


def test_output_streams_stdout_and_ends_cleanly_on_exit_zero():
    out = process.ProcessOutput(command("import sys; sys.stdout.buffer.write(b'x' * 3_000_000)"))
    total = 0
    while chunk := out.read(65536):
        total += len(chunk)
    out.close()
    assert total == 3_000_000


def test_output_reports_a_failure_at_the_end_with_the_stderr_tail():
    code = "import sys; print('partial'); print('boom: disk full', file=sys.stderr); sys.exit(3)"
    out = process.ProcessOutput(command(code))
    with pytest.raises(CommandConnectorError) as info:
        out.read()
    assert info.value.exit_status == 3
    assert "boom: disk full" in str(info.value)
    assert "exit status 3" in str(info.value)


def test_chatty_stderr_does_not_deadlock_and_only_a_tail_is_kept():
    code = "import sys\nfor i in range(200000): sys.stderr.write('noise %d\\n' % i)\nsys.exit(1)"
    out = process.ProcessOutput(command(code))
    with pytest.raises(CommandConnectorError) as info:
        out.read()
    assert len(info.value.stderr_tail) <= process.STDERR_TAIL_BYTES
    assert "noise 199999" in info.value.stderr_tail


def test_closing_early_kills_the_tool():
    out = process.ProcessOutput(command("import time\nwhile True: print('y' * 1000, flush=True)"))
    assert out.read(10)
    pid = out.pid
    out.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_binary_names_the_tool_and_the_hint():
    missing = process.Command(argv=["no-such-dump-tool", "--x"], missing_hint="Install the foo package.")
    with pytest.raises(CommandConnectorError, match=r"'no-such-dump-tool' was not found on PATH\. Install"):
        process.ProcessOutput(missing)


def test_feed_streams_stdin_to_the_tool(tmp_path):
    target = tmp_path / "out.bin"
    data = os.urandom(5_000_000)
    code = f"import sys, shutil; shutil.copyfileobj(sys.stdin.buffer, open({str(target)!r}, 'wb'))"
    process.feed(command(code), io.BytesIO(data))
    assert target.read_bytes() == data


def test_feed_kills_the_tool_before_end_of_input_when_the_source_fails(tmp_path):
    marker = tmp_path / "committed"
    # The tool "commits" only when it sees a clean end of its input.
    code = f"import sys\nsys.stdin.buffer.read()\nopen({str(marker)!r}, 'w').write('x')"
    source = DigestReader(io.BytesIO(b"data" * 1000), expected_sha256="0" * 64, label="bad")
    with pytest.raises(CorruptBackupError):
        process.feed(command(code), source)
    assert not marker.exists()


def test_feed_reports_a_tool_that_fails_part_way():
    code = (
        "import sys\nsys.stdin.buffer.read(10)\nprint('syntax error at line 1', file=sys.stderr)\nsys.exit(2)"
    )
    with pytest.raises(CommandConnectorError, match="syntax error at line 1") as info:
        process.feed(command(code), io.BytesIO(os.urandom(10_000_000)))
    assert info.value.exit_status == 2


def test_secrets_are_redacted_from_messages_and_argv():
    secret = "s3cr3t-pa55"
    failing = process.Command(
        argv=[
            PY,
            "-c",
            f"import sys; print('auth failed for {secret}', file=sys.stderr); sys.exit(1)",
            secret,
        ],
        secrets=(secret,),
    )
    with pytest.raises(CommandConnectorError) as info:
        process.run(failing)
    assert secret not in str(info.value)
    assert secret not in " ".join(info.value.argv)
    assert secret not in info.value.stderr_tail
    assert process.REDACTED in str(info.value)


def test_env_is_passed_and_layers_override_in_order():
    env = process.build_env({"A": "1", "B": "1"}, None, {"B": "2"}, inherit=False)
    assert env == {"A": "1", "B": "2"}
    out = process.run(
        process.Command(argv=[PY, "-c", "import os; print(os.environ['B'])"], env={**os.environ, **env})
    )
    assert out.strip() == "2"
    assert "PATH" in process.build_env({}, inherit=True)


def test_run_times_out():
    with pytest.raises(CommandConnectorError, match="did not finish within"):
        process.run(command("import time; time.sleep(10)"), timeout=0.5)
