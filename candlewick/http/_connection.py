"""The ASGI HTTP connection class: quart-trio's, with a response's last write shielded from cancellation."""

from __future__ import annotations

import trio
from quart_trio.asgi import TrioASGIHTTPConnection


class HTTPConnection(TrioASGIHTTPConnection):
    """quart-trio's connection, with the last write of a response shielded from the request's cancellation.

    When a response is complete before the request body has arrived (a 401, 404, 405 or 413 answered
    without reading it), hypercorn closes the connection from inside that last write; the same write
    ends the request stream, so quart-trio cancels the request at once, interrupting the close. The
    socket was then left open with nobody reading it, and the client's next request on that keep-alive
    connection hung until ``read_timeout`` (found by the schemathesis fuzz test).
    """

    async def _send_response(self, send, response) -> None:
        async def send_last_shielded(message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.move_on_after(10, shield=True):
                    await send(message)
            else:
                await send(message)

        await super()._send_response(send_last_shielded, response)
