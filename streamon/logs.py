"""Logging: JSON lines for ELK / Loki when not on a terminal, readable lines when on one.

Each JSON line carries ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and any
context passed with ``extra={...}`` (e.g. ``model``, ``partition``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line.

    >>> rec = logging.LogRecord("streamon.worker", logging.INFO, "", 0, "restored", None, None)
    >>> rec.partition = 3
    >>> doc = orjson.loads(JsonFormatter().format(rec))
    >>> doc["level"], doc["message"], doc["partition"]
    ('info', 'restored', 3)
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Configure the root logger once; ``json_lines=None`` picks JSON unless stderr is a terminal."""
    name = level.upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        from streamon.errors import InputError

        raise InputError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)


LIBRDKAFKA_LOGGER = "streamon.librdkafka"


def librdkafka_logger(client: Mapping[str, Any]) -> logging.Logger:
    """The logger to pass as ``logger`` to every Kafka client (``client`` = ``kafka.client``).

    librdkafka's own lines then reach stderr as streamon log lines (JSON, secrets scrubbed
    by the root handlers' filter), never as raw text. Silent unless debugging: one line per
    failed connection attempt and client is noise, streamon reports what matters in its own
    lines. ``debug`` in ``kafka.client`` or the DEBUG log level turns them on.
    """
    quiet = logging.getLogger(LIBRDKAFKA_LOGGER)
    wanted = "debug" in client or logging.getLogger().isEnabledFor(logging.DEBUG)
    quiet.setLevel(logging.DEBUG if wanted else logging.CRITICAL)
    return quiet
