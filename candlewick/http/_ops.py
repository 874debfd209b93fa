"""The operations routes: liveness, readiness, the supervisor tree, Prometheus, openapi.json, the dashboard."""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from candlewick.engine import Engine
from candlewick.http._json import json_response
from candlewick.http._openapi import document as openapi_document


def register(app: QuartTrio, engine: Engine) -> None:
    async def liveness():
        return json_response({"ok": True})

    async def readiness():
        failed = engine.router.failed_symbols()
        checks = {"engine": "ok" if engine.state == "running" and not failed else "fail"}
        if not engine.store.durable:
            checks["db"] = "off"
        else:
            checks["db"] = "ok" if await engine.store.check() else "fail"
        checks["redis"] = "off" if engine.bus is None else ("ok" if await engine.bus.check() else "fail")
        ready = all(v in ("ok", "off") for v in checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        if failed:
            body["failedActors"] = [f"symbol:{s}" for s in failed]
        return json_response(body, 200 if ready else 503)

    for path, name, view in (("/api/v1/health/liveness", "liveness_v1", liveness),
                             ("/health/liveness", "liveness", liveness),
                             ("/api/v1/health/readiness", "readiness_v1", readiness),
                             ("/health/readiness", "readiness", readiness)):
        app.add_url_rule(path, name, view, methods=["GET"])

    @app.get("/ops/health/supervisor")
    async def supervisor_tree():
        return json_response(engine.tree())

    async def prometheus():
        return Response(engine.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_url_rule("/ops/metrics", "metrics", prometheus, methods=["GET"])
    app.add_url_rule("/api/v1/ops/metrics", "metrics_v1", prometheus, methods=["GET"])

    @app.get("/api/v1/openapi.json")
    async def openapi():
        return json_response(openapi_document())

    @app.get("/")
    async def dashboard():
        return await app.send_static_file("index.html")
