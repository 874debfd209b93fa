"""HTTP front: the quart-trio app (routes, auth, SSE, errors, OpenAPI, dashboard) and its server."""

from candlewick.http._app import create_app
from candlewick.http._serve import bind_address, listen, serve

__all__ = ["bind_address", "create_app", "listen", "serve"]
