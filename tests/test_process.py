"""dbbackup.process runs real processes here: python, sh and cat."""

import fcntl
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


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("gpg: encrypted for probe-pass@example.com", "x"),  # 1 char, inside a word
        ("gpg: encrypted for probe-pass@example.com", "pass"),  # one dashed part of an address
        ("gpg: encrypted for probe-pass@example.com", "example"),  # one dotted part of a domain
        ("connecting to db.internal with user postgres", "post"),  # a common prefix
        ("password authentication failed", "word"),  # a common suffix
    ],
)
def test_redaction_leaves_words_that_merely_contain_a_secret_alone(text, secret):
    # Redacting inside a word shows where the secret sits in text the reader knows, so it
    # reveals the secret (e********ample for "x"): words are left whole.
    assert process.redact(text, [secret]) == text


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("pg_dump --password=x db", "x", "pg_dump --password=******** db"),
        ("postgresql://app:x@db:5432/site", "x", "postgresql://app:********@db:5432/site"),
        ("PGPASSWORD=x\nHOME=/root", "x", "PGPASSWORD=********\nHOME=/root"),
        ('FATAL: password for "pass" rejected.', "pass", 'FATAL: password for "********" rejected.'),
        ("the passphrase is pass.", "pass", "the passphrase is ********."),
        ("url: https://u:p%40ss%2Fw@host/", "p@ss/w", "url: https://u:********@host/"),
        ("mysqldump --password='it'\"'\"'s' db", "it's", "mysqldump --password=******** db"),
        ("no backup 'hunter2-db-password.dump'", "hunter2-db-password", "no backup '********.dump'"),
    ],
)
def test_redaction_cuts_secrets_out_wherever_they_stand_as_values(text, secret, expected):
    assert process.redact(text, [secret]) == expected


def test_redaction_never_shows_length_nor_pieces_of_overlapping_secrets():
    text = "a=abc b=abcdefghij"
    redacted = process.redact(text, ["abc", "abcdefghij"])
    assert redacted == "a=******** b=********"
    assert process.redact("k=x", ["x"]) == process.redact("k=" + "y" * 40, ["y" * 40])


def test_describe_redacts_each_argument_before_quoting_it():
    described = process.describe(["mysql", "--password=it's", "db"], ["it's"])
    assert "it" not in described.replace("********", "")
    assert "********" in described


def test_pipe_inputs_reach_the_tool_as_dev_fd_without_touching_the_disk(tmp_path):
    code = "import sys; print(open(sys.argv[1].split('=', 1)[1]).read(), end='')"
    secret = "pass'word\n[client]"
    tool = process.Command(
        argv=[PY, "-c", code, "--defaults-extra-file=/dev/fd/{fd}"],
        secrets=(secret,),
        pipe_inputs=((3, secret.encode()),),
    )
    assert process.run(tool) == secret
    assert "{fd}" in tool.describe()  # the template, not a descriptor of this process
    before = set(os.listdir("/proc/self/fd"))
    process.run(tool)
    assert set(os.listdir("/proc/self/fd")) == before  # both ends closed in the parent


def test_pipe_input_too_large_for_the_pipe_buffer_is_refused_before_the_tool_runs(tmp_path):
    marker = tmp_path / "ran"
    tool = process.Command(
        argv=[PY, "-c", f"open({str(marker)!r}, 'w')", "/dev/fd/{fd}"],
        pipe_inputs=((3, b"x" * (4 * 1024 * 1024)),),
    )
    with pytest.raises(CommandConnectorError, match="does not fit in the pipe buffer"):
        process.run(tool)
    assert not marker.exists()


# -- a tool that stops reading early: the source is still read to its end -----------------------

STOPS_EARLY = "import sys\nsys.stdin.buffer.read(100)\nsys.stdout.write('done')"
BIG = os.urandom(4 * 1024 * 1024)


def test_feed_still_checks_the_source_when_the_tool_stops_reading_early():
    source = DigestReader(io.BytesIO(BIG), expected_sha256="0" * 64, label="bad")
    with pytest.raises(CorruptBackupError):
        process.feed(command(STOPS_EARLY), source)


def test_feed_reads_a_good_source_to_its_end_when_the_tool_stops_early():
    import hashlib

    source = DigestReader(io.BytesIO(BIG), expected_sha256=hashlib.sha256(BIG).hexdigest())
    process.feed(command(STOPS_EARLY), source)
    assert source.checked
    assert source.size == len(BIG)


def test_filter_streams_the_tool_output_and_counts_what_it_did_not_read():
    code = "import sys\ndata = sys.stdin.buffer.read(100)\nsys.stdout.buffer.write(data[::-1])"
    stream = process.ProcessFilter(command(code), io.BytesIO(BIG))
    assert stream.read() == BIG[:100][::-1]
    assert stream.unread > 0


def test_filter_raises_the_source_error_at_its_end_even_after_the_tool_finished():
    code = "import sys\nsys.stdin.buffer.read(100)"
    stream = process.ProcessFilter(command(code), DigestReader(io.BytesIO(BIG), expected_sha256="0" * 64))
    with pytest.raises(CorruptBackupError):
        stream.read()


def test_filter_kills_the_tool_before_end_of_input_when_the_source_fails(tmp_path):
    marker = tmp_path / "committed"
    code = f"import sys\nsys.stdin.buffer.read()\nopen({str(marker)!r}, 'w').write('x')"
    stream = process.ProcessFilter(command(code), DigestReader(io.BytesIO(BIG), expected_sha256="0" * 64))
    with pytest.raises(CorruptBackupError):
        stream.read()
    assert not marker.exists()


def test_filter_reports_the_tool_failure():
    stream = process.ProcessFilter(command("import sys\nsys.exit(3)"), io.BytesIO(BIG))
    with pytest.raises(CommandConnectorError) as info:
        stream.read()
    assert info.value.exit_status == 3
    stream.close()


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes can be set on Linux only")
def test_a_tools_output_pipe_holds_a_megabyte_so_the_tool_runs_ahead():
    """Throughput, not safety: a dump tool keeps writing while the pipeline compresses."""
    output = process.ProcessOutput(process.Command(argv=["sh", "-c", "printf data"]))
    try:
        assert fcntl.fcntl(output._proc.stdout.fileno(), fcntl.F_GETPIPE_SZ) == process.PIPE_BUFFER_BYTES
        assert output.read() == b"data"
    finally:
        output.close()
