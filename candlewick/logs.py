"""structlog setup: JSON lines on stderr, or a pretty console with LOG_PRETTY=1 (colours only on a terminal).

The standard library's loggers (hypercorn's) go through the same renderer. Every line names its
logger (``candlewick.access`` is the access log: one line per HTTP request) and, during a request,
carries its ``request_id`` (bound by the HTTP hooks in structlog's context variables).
"""

from __future__ import annotations

import logging
import sys

import structlog


def log_level(level: int | str) -> int:
    """``level`` as a logging level number: a number, or a name such as ``"warning"``."""
    if isinstance(level, int):
        return level
    if level.strip().isdigit():
        return int(level)
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning, error or critical")
    return number


def configure_logging(pretty: bool = False, level: int | str = logging.INFO) -> None:
    """Send every log line to stderr at ``level`` and above; ``pretty`` renders for people, in colour
    only when stderr is a terminal (a file or a pipe gets no escape codes)."""
    level = log_level(level)
    stream = sys.stderr
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if pretty:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.add_logger_name, structlog.processors.StackInfoRenderer(),
                    structlog.processors.format_exc_info, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
