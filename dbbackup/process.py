"""The only module of dbbackup that starts processes.

Rules it keeps so that callers do not have to:

* argv is always a list, never a shell string; nothing is run through a shell;
* secrets travel in the environment or through an inherited pipe (``Command.pipe_inputs``:
  the tool reads ``/dev/fd/N``), never in argv and never on disk; the caller names them in
  ``secrets`` so that they are also cut out of error messages;
* stderr (and stdout when it is not the data) is drained on a thread into a bounded tail, so a
  chatty tool can neither deadlock on a full pipe nor fill memory;
* a process is reaped only after its pipes are drained; a stream closed early, or a failure
  of the data source, kills the tool so that it never sees a clean end of input.

Failures raise :class:`~dbbackup.exceptions.CommandConnectorError` carrying the redacted argv,
the exit status and the tail of stderr.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from dbbackup.exceptions import CommandConnectorError
from dbbackup.redaction import REDACTED as REDACTED  # importable from here, as before
from dbbackup.redaction import describe, redact
from dbbackup.streams import CHUNK_SIZE, _ReaderBase, drain

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: pipes keep the system's size
    fcntl = None  # type: ignore[assignment]

#: How much of a tool's stderr is kept for error messages.
STDERR_TAIL_BYTES = 8 * 1024
#: How long to wait for a tool to exit once its output has ended.
EXIT_TIMEOUT_SECONDS = 60
#: The pipe buffer asked for a tool's output (Linux; 1 MiB is the unprivileged maximum), so
#: the tool runs ahead while the pipeline compresses instead of stalling on a 64 KiB pipe.
PIPE_BUFFER_BYTES = 1024 * 1024


def _widen_pipe(pipe: BinaryIO | None) -> None:
    """Enlarge ``pipe``'s kernel buffer where the system allows it; a no-op elsewhere or for None."""
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)  # fcntl is None off POSIX
    if pipe is not None and setter is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), setter, PIPE_BUFFER_BYTES)


class _Tail:
    """Drains a pipe on a daemon thread, keeping only its last bytes."""

    def __init__(self, pipe: BinaryIO, limit: int = STDERR_TAIL_BYTES) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: BinaryIO) -> None:
        with pipe:
            while chunk := pipe.read(4096):
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size - len(self._chunks[0]) >= self._limit:
                    self._size -= len(self._chunks.popleft())

    def text(self, timeout: float | None = EXIT_TIMEOUT_SECONDS) -> str:
        self._thread.join(timeout)
        data = b"".join(self._chunks)[-self._limit :]
        return data.decode("utf-8", errors="replace").strip()


@dataclass(frozen=True)
class Command:
    """What to run: an argv list, the full environment, and what to keep out of messages.

    ``missing_hint`` completes the message shown when ``argv[0]`` is not found (say, which
    package provides the tool and which setting names another executable).
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    secrets: tuple[str, ...] = ()
    missing_hint: str = ""
    #: Called once the tool has exited (or failed to start).
    cleanup: tuple[Callable[[], None], ...] = ()
    #: ``(index, content)`` pairs: the content is written to a new pipe whose read end the tool
    #: inherits, and ``{fd}`` in ``argv[index]`` becomes that descriptor's number (so
    #: ``--defaults-extra-file=/dev/fd/{fd}`` reads it). Nothing touches the disk, and the pipe
    #: dies with the processes, however they end.
    pipe_inputs: tuple[tuple[int, bytes], ...] = ()

    def finished(self) -> None:
        """Run the cleanup callbacks; each at most once is the caller's business."""
        for callback in self.cleanup:
            with contextlib.suppress(OSError):
                callback()

    def describe(self) -> str:
        return describe(self.argv, self.secrets)

    def error(self, message: str, returncode: int | None = None, stderr: str = "") -> CommandConnectorError:
        stderr = redact(stderr, self.secrets)
        full = f"{message}: {self.describe()}"
        if returncode is not None:
            full += f" (exit status {returncode})"
        if stderr:
            full += f"\n{stderr}"
        return CommandConnectorError(
            full,
            argv=[redact(arg, self.secrets) for arg in self.argv],
            returncode=returncode,
            stderr_tail=stderr,
        )

    def start(self, **popen_kwargs) -> subprocess.Popen:
        """Start the tool; on failure run the cleanup and raise a readable error.

        The pipes of ``pipe_inputs`` are filled before the tool starts (each content must fit
        in a pipe's buffer, 64 KiB on Linux) and their read ends are closed here once the tool
        holds them.
        """
        argv = list(self.argv)
        read_ends: list[int] = []
        try:
            for index, content in self.pipe_inputs:
                read_ends.append(_filled_pipe(content))
                argv[index] = argv[index].replace("{fd}", str(read_ends[-1]))
            return subprocess.Popen(
                argv,
                env=dict(self.env) if self.env is not None else None,
                pass_fds=(*popen_kwargs.pop("pass_fds", ()), *read_ends),
                **popen_kwargs,
            )
        except FileNotFoundError as exc:
            self.finished()
            hint = f" {self.missing_hint}" if self.missing_hint else ""
            raise CommandConnectorError(
                f"The command {self.argv[0]!r} was not found on PATH.{hint}",
                argv=[self.argv[0]],
            ) from exc
        except OSError as exc:
            self.finished()
            raise self.error(f"Could not start the command ({exc.strerror})") from exc
        finally:
            for descriptor in read_ends:
                os.close(descriptor)


def _filled_pipe(content: bytes) -> int:
    """A pipe holding ``content`` with its write end closed; return the read end."""
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        if os.write(write_end, content) != len(content):
            raise BlockingIOError
    except BlockingIOError:
        os.close(read_end)
        raise OSError(0, "the data for the tool's pipe does not fit in the pipe buffer") from None
    finally:
        os.close(write_end)
    return read_end


def _close_quietly(pipe: BinaryIO) -> None:
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=EXIT_TIMEOUT_SECONDS)


class ProcessOutput(_ReaderBase):
    """A readable stream of a running tool's stdout.

    The end of the stream is only reported (``b""``) once the tool has exited with status 0;
    otherwise reading the end raises :class:`CommandConnectorError`. Closing the stream before
    its end kills the tool.
    """

    def __init__(self, command: Command, stdin: BinaryIO | int | None = subprocess.DEVNULL) -> None:
        self.command = command
        self._finished = True  # until the tool has started: nothing to kill on close()
        self._proc = command.start(stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for pipe in (self._proc.stdout, self._proc.stdin):
            _widen_pipe(pipe)
        self._stderr = _Tail(self._proc.stderr)
        self._finished = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read(self, size: int) -> bytes:
        if self._finished:
            return b""
        data = self._proc.stdout.read1(size) if size else b""
        if data or not size:
            return data
        self._finish()
        return b""

    def _reap(self, timeout: float | None) -> tuple[int, str]:
        """Close the output, wait for the tool and run its cleanup; its status and stderr tail."""
        self._proc.stdout.close()
        returncode = self._proc.wait(timeout=timeout)
        stderr = self._stderr.text()
        self._finished = True
        self.command.finished()
        return returncode, stderr

    def _finish(self) -> None:
        returncode, stderr = self._reap(EXIT_TIMEOUT_SECONDS)
        if returncode != 0:
            raise self.command.error("The command failed", returncode, stderr)

    def close(self) -> None:
        if not self.closed and not self._finished:
            _kill(self._proc)
            self._proc.stdout.close()
            self._finished = True
            self.command.finished()
        super().close()


def feed(command: Command, source: BinaryIO, chunk_size: int = CHUNK_SIZE) -> str:
    """Run ``command`` with ``source`` streamed to its stdin; return its (tail of) stdout.

    The tool's stdin is closed only after ``source`` has ended cleanly. If reading ``source``
    raises (a checksum mismatch found at its end, say), the tool is killed before it sees the end
    of its input and the exception propagates: a tool that commits only what it was told to
    commit therefore commits nothing.

    When the tool stops reading early and exits with status 0, ``source`` is still read to its
    end, so that every check made by ``read()`` (size, SHA-256) runs and can raise; when it
    exits with another status, its error is raised without reading further.

    Raises :class:`CommandConnectorError` when the tool exits with a non-zero status.
    """
    proc = command.start(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _widen_pipe(proc.stdin)
    stdout, stderr = _Tail(proc.stdout), _Tail(proc.stderr)
    stopped_early = _pump(proc, command, source, chunk_size)
    returncode = proc.wait(timeout=None)
    command.finished()
    out, err = stdout.text(), stderr.text()
    if returncode != 0:
        raise command.error("The command failed", returncode, err or out)
    if stopped_early:
        drain(source, chunk_size)
    return out


def _pump(proc: subprocess.Popen, command: Command, source: BinaryIO, chunk_size: int) -> bool:
    """Write ``source`` to the tool's stdin, then close it; True if the tool stopped reading early.

    If reading ``source`` raises, the tool is killed before it sees the end of its input and
    the exception propagates.
    """
    try:
        while chunk := source.read(chunk_size):
            try:
                proc.stdin.write(chunk)
            except BrokenPipeError:
                return True  # the tool stopped reading: its exit status says why
    except BaseException:
        _kill(proc)
        _close_quietly(proc.stdin)
        command.finished()
        raise
    finally:
        _close_quietly(proc.stdin)
    return False


class ProcessFilter(ProcessOutput):
    """A tool between two streams: ``source`` goes to its stdin, its stdout is this stream.

    A thread feeds ``source`` to the tool. The end of this stream (``b""``) is reported only
    once the tool has exited with status 0 **and** ``source`` was read to its end without
    error; otherwise ``read()`` raises the tool's :class:`CommandConnectorError` or what
    ``source`` raised. If ``source`` fails, the tool is killed before it sees the end of its
    input. When the tool stops reading early, ``source`` is still read to its end, and
    :attr:`unread` counts the bytes the tool never asked for (what still sat in the pipe is not
    counted). Closing the stream before its end kills the tool.
    """

    def __init__(self, command: Command, source: BinaryIO, chunk_size: int = CHUNK_SIZE) -> None:
        self.unread = 0
        self._source = source
        self._chunk_size = chunk_size
        self._error: BaseException | None = None
        self._stop = threading.Event()
        super().__init__(command, stdin=subprocess.PIPE)
        self._thread = threading.Thread(target=self._feed, name="dbbackup-filter-feed", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        writing = True
        try:
            while not self._stop.is_set() and (chunk := self._source.read(self._chunk_size)):
                if writing:
                    try:
                        self._proc.stdin.write(chunk)
                        continue
                    except (BrokenPipeError, ValueError):
                        writing = False
                self.unread += len(chunk)
        except BaseException as exc:  # the source failed: the tool must never see a clean end
            self._error = exc
            with contextlib.suppress(Exception):
                _kill(self._proc)
        finally:
            _close_quietly(self._proc.stdin)

    def _finish(self) -> None:
        returncode, stderr = self._reap(None)  # the source decides how long the tool takes
        if self._error is None and returncode == 0:
            self._thread.join()  # the rest of the source: its checks must run
        else:
            self._stop.set()
            self._thread.join(EXIT_TIMEOUT_SECONDS)
        if self._error is not None:
            raise self._error
        if returncode != 0:
            raise self.command.error("The command failed", returncode, stderr)

    def close(self) -> None:
        stopping = not self.closed and not self._finished
        if stopping:
            self._stop.set()
        super().close()  # kills the tool if it still runs
        if stopping:
            self._thread.join(EXIT_TIMEOUT_SECONDS)


def run(command: Command, timeout: float = EXIT_TIMEOUT_SECONDS) -> str:
    """Run ``command`` to completion with no input; return its stdout as text.

    For small outputs only (``--version`` and the like). Raises
    :class:`CommandConnectorError` on a non-zero exit status or a timeout.
    """
    proc = command.start(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill(proc)
        raise command.error(f"The command did not finish within {timeout} seconds") from exc
    finally:
        command.finished()
    if proc.returncode != 0:
        raise command.error("The command failed", proc.returncode, err.decode("utf-8", "replace"))
    return out.decode("utf-8", errors="replace")


def build_env(*layers: Mapping[str, str] | None, inherit: bool = True) -> dict[str, str]:
    """Merge environment layers, later ones winning, optionally over ``os.environ``."""
    env = dict(os.environ) if inherit else {}
    for layer in layers:
        if layer:
            env.update({str(key): str(value) for key, value in layer.items()})
    return env


def run_to_files(
    command: Command,
    stdin: BinaryIO | None,
    stdout: BinaryIO,
    stderr: BinaryIO,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Run ``command`` to completion with its output written straight into two open files.

    ``stdout`` and ``stderr`` must be real files (they need a ``fileno()``); the tool writes to
    them directly, so neither output is held in memory. ``stdin``, when given, is read to its
    end in chunks and streamed to the tool (``None``: the tool reads nothing). If reading
    ``stdin`` raises, the tool is killed before it sees the end of its input and the exception
    propagates. Returns the exit status; a tool that cannot be started raises
    :class:`CommandConnectorError`.
    """
    proc = command.start(
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )
    if stdin is not None:
        _pump(proc, command, stdin, chunk_size)
    returncode = proc.wait(timeout=None)
    command.finished()
    return returncode
