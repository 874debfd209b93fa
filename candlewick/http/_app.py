"""The app factory: a quart-trio app over one running Engine, with its hooks, error handlers and routes."""

from __future__ import annotations

from quart_trio import QuartTrio

from candlewick.engine import Engine
from candlewick.http._connection import HTTPConnection
from candlewick.http._errors import install as install_error_handlers
from candlewick.http._hooks import install as install_hooks
from candlewick.http._ops import register as register_ops
from candlewick.http._read import register as register_read
from candlewick.http._realtime import register as register_realtime
from candlewick.http._write import register as register_write


def create_app(engine: Engine) -> QuartTrio:
    """Every route of docs/API.md over ``engine``."""
    config = engine.config
    app = QuartTrio(__name__, static_folder="static", static_url_path="/static")
    app.asgi_http_class = HTTPConnection
    app.config.update(MAX_CONTENT_LENGTH=config.max_body_bytes, RESPONSE_TIMEOUT=None, BODY_TIMEOUT=30,
                      JSON_SORT_KEYS=False)
    install_error_handlers(app)
    install_hooks(app, config, engine.metrics.http)
    for register in (register_write, register_read, register_realtime, register_ops):
        register(app, engine)
    return app
