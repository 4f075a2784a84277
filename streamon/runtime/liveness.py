"""What keeps a worker from being alive but stuck: error classes, the watchdog, the state dir.

A worker either makes progress or says why not and exits non-zero (exit code 4, see
:class:`streamon.errors.WorkerStalledError`) so a supervisor restarts it:

- :func:`classify` sorts the ``KafkaError`` of a failed client call into what the loop
  does next: retry the call, abort the transaction and redo the batch, renew a fenced
  producer, or give up (fatal).
- :class:`Watchdog` is a thread that ends the process when the main loop cannot: a
  librdkafka call can block past its timeout argument, and a Python signal handler only
  runs once the main thread is back from C. It sees SIGTERM / SIGINT through
  :func:`signal.set_wakeup_fd` the moment they arrive.
- :func:`lock_state_dir` checks the state directory once, at start, and holds a lock
  on it so that two workers never share one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaError, KafkaException

from streamon.errors import InputError

log = logging.getLogger("streamon.worker")

EXIT_STALLED = 4

RETRY = "retry"  # the same call again, after a backoff (timeouts, brokers down)
ABORT = "abort"  # abort the transaction, redo the batch from the last commit
FENCED = "fenced"  # a new producer with the same transactional id, then resume from the broker's offsets
FATAL = "fatal"  # the client cannot recover: exit non-zero

# A newer producer epoch exists for the transactional id (another instance with the same
# id, or the coordinator bumped it after the transaction timed out): only a new producer helps.
_FENCED_CODES = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
# Transient whatever librdkafka's retriable() flag says: the cluster may come back.
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.CONCURRENT_TRANSACTIONS,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a ``KafkaException`` carries (None for other exceptions)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def classify(err: KafkaError | None) -> str:
    """What to do after a client call failed with ``err``: RETRY, ABORT, FENCED or FATAL.

    >>> classify(KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True))
    'retry'
    >>> classify(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    'fenced'
    >>> classify(KafkaError(KafkaError._STATE, "bad state", txn_requires_abort=True))
    'abort'
    >>> classify(KafkaError(KafkaError._INVALID_ARG, "nope", fatal=True))
    'fatal'
    """
    if err is None:
        return ABORT
    code = err.code()
    if code in _FENCED_CODES:
        return FENCED
    if err.fatal():
        return FATAL
    if err.txn_requires_abort():
        return ABORT
    if err.retriable() or code in _TRANSIENT_CODES:
        return RETRY
    return ABORT


def backoff(failures: int, first: float = 0.5, cap: float = 10.0) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (exponential, capped).

    >>> [backoff(n) for n in (1, 2, 3, 10)]
    [0.5, 1.0, 2.0, 10.0]
    """
    return min(cap, first * 2 ** max(0, min(failures - 1, 16)))


class Watchdog(threading.Thread):
    """Ends the process with one line when the main loop is stuck or shutting down too slowly.

    ``stuck()`` returns a reason once the worker has gone past its stall deadline (checked
    every ``interval`` seconds); a first SIGTERM / SIGINT calls ``on_signal`` (the worker's
    ``stop``) and gives the worker ``grace`` seconds to finish; a second one, or the end of
    the grace period, exits at once. ``exit`` is :func:`os._exit`: nothing may wait for a
    thread that is blocked in librdkafka.
    """

    def __init__(
        self,
        stuck: Callable[[], str | None],
        on_signal: Callable[[], None],
        grace: float,
        interval: float = 0.5,
        exit: Callable[[int], Any] = os._exit,
    ) -> None:
        super().__init__(name="streamon-watchdog", daemon=True)
        self.stuck = stuck
        self.on_signal = on_signal
        self.grace = grace
        self.interval = interval
        self.exit = exit
        self._wakeup: socket.socket | None = None
        self._deadline: float | None = None  # shutdown must be over by then
        self._why = ""
        self._done = threading.Event()

    def watch_signals(self) -> None:
        """Route SIGTERM and SIGINT to this thread as well (call from the main thread)."""
        read, write = socket.socketpair()
        read.setblocking(False)
        write.setblocking(False)
        signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        self._keep = write  # the descriptor must outlive this call
        self._wakeup = read

    def shutting_down(self, why: str) -> None:
        """The worker has begun to shut down: it must be gone within ``grace`` seconds."""
        if self._deadline is None:
            self._why = why
            self._deadline = time.monotonic() + self.grace

    def finish(self) -> None:
        self._done.set()

    def run(self) -> None:
        signals = 0
        while not self._done.is_set():
            if self._wakeup is not None:
                ready, _, _ = select.select([self._wakeup], [], [], self.interval)
                got = self._read_signals() if ready else []
            else:
                self._done.wait(self.interval)
                got = []
            for signum in got:
                signals += 1
                try:
                    name = signal.Signals(signum).name
                except ValueError:
                    name = f"signal {signum}"
                if signals == 1:
                    log.info("%s received: finishing the current batch, then leaving", name)
                    self.shutting_down(f"after {name}")
                    self.on_signal()
                else:
                    self._hard_exit(f"second {name}: exiting now, without finishing the batch")
                    return
            if self._deadline is not None and time.monotonic() > self._deadline:
                self._hard_exit(
                    f"shutdown did not finish within {self.grace:g}s {self._why}: exiting now; "
                    "the open transaction is aborted by Kafka, nothing is lost"
                )
                return
            reason = self.stuck()
            if reason is not None:
                self._hard_exit(reason)
                return

    def _read_signals(self) -> list[int]:
        assert self._wakeup is not None
        try:
            return list(self._wakeup.recv(64))
        except (BlockingIOError, InterruptedError):
            return []

    def _hard_exit(self, line: str) -> None:
        log.critical("%s", line)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:  # exiting regardless
                pass
        sys.stderr.flush()
        self.exit(EXIT_STALLED)


# --------------------------------------------------------------------------- state dir

LOCK_NAME = ".streamon.lock"


class StateDirLock:
    """An exclusive ``flock`` on ``<state dir>/.streamon.lock``, held while the worker runs."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the lock
            self._handle = None


def _problem(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        return f"state dir {path} is on a read-only file system: give --state-dir a writable directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"state dir {path} is not writable ({reason}): fix its permissions or use another --state-dir"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"state dir {path} is full ({reason}): free space on it or give --state-dir another directory"
    if exc.errno == errno.ENOTDIR:
        return f"state dir {path} cannot be created ({reason}: a parent is a file): use another --state-dir"
    return f"state dir {path} cannot be used ({reason}): choose another --state-dir"


def lock_state_dir(path: Path) -> StateDirLock:
    """Create ``path`` if needed, check that it is a writable directory, and lock it.

    Raises :class:`InputError` (one line naming the path) when it is a file, cannot be
    created or written, or another worker holds its lock.
    """
    import fcntl

    if path.exists() and not path.is_dir():
        raise InputError(f"state dir {path} is not a directory: give --state-dir a directory (or a new path)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
    except OSError as exc:
        raise InputError(_problem(path, exc)) from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise InputError(
                f"state dir {path} is in use by another worker ({holder}): give each worker its own "
                "--state-dir"
            ) from None
        raise InputError(_problem(path, exc)) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        probe = path / f".streamon-write-check-{os.getpid()}"
        probe.write_bytes(b"")  # the lock file may pre-exist: prove a new file can be made
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):  # on a full disk the close's flush fails again
            handle.close()
        raise InputError(_problem(path, exc)) from None
    return StateDirLock(path, handle)
