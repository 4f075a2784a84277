"""The root exception of streamon and the exit codes the CLI maps errors to."""

from __future__ import annotations


class StreamonError(Exception):
    """An error the user can fix. ``str(err)`` is one line saying what to do."""

    exit_code = 1


class ConfigError(StreamonError):
    """The configuration is invalid; the message names the bad key's path."""

    exit_code = 2


class InputError(StreamonError):
    """A file or argument given on the command line cannot be used."""

    exit_code = 2


class KafkaUnavailableError(StreamonError):
    """The Kafka cluster cannot be reached or refused the request."""

    exit_code = 3


class WorkerStalledError(StreamonError):
    """A worker that cannot make progress (Kafka fatal error, or no commit for ``kafka.stall_timeout``
    while it has work): it exits so that a supervisor restarts it."""

    exit_code = 4
