"""`/v1/openapi.json`: the OpenAPI document, built from the routes and their request models."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from engine.api.context import scope_of
from engine.schemas import (
    BatchIn,
    CategoryIn,
    EventIn,
    FeedbackIn,
    NotificationIn,
    PreferencesIn,
    RecipientBulkItem,
    RecipientIn,
)

routes = web.RouteTableDef()

# Request bodies by (method, path); added to as the API grows.
REQUEST_BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("PUT", "/v1/categories/{key}"): CategoryIn,
    ("PUT", "/v1/recipients/{id}"): RecipientIn,
    ("POST", "/v1/recipients/bulk"): RecipientBulkItem,
    ("PUT", "/v1/recipients/{id}/preferences"): PreferencesIn,
    ("POST", "/v1/notifications"): NotificationIn,
    ("POST", "/v1/notifications/batch"): BatchIn,
    ("POST", "/v1/deliveries/{id}/events"): EventIn,
    ("POST", "/v1/deliveries/{id}/feedback"): FeedbackIn,
}
ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
        }
    },
}


def build(app: web.Application) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every route of `app`."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if not path or route.method in ("HEAD", "*"):
            continue
        handler = route.handler
        doc = (handler.__doc__ or "").strip()
        operation: dict[str, Any] = {
            "operationId": getattr(handler, "__name__", path),
            "summary": doc.splitlines()[0] if doc else "",
            "responses": {
                "200": {"description": "OK"},
                "4XX": {
                    "description": "Bad input",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if needed := scope_of(handler):
            operation["security"] = [{"bearer": []}]
            operation["description"] = f"Needs an API key with the `{needed}` scope."
        model = REQUEST_BODIES.get((route.method, path))
        if model is not None:
            schemas[model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for name, sub in schemas[model.__name__].pop("$defs", {}).items():
                schemas[name] = sub
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tidings",
            "version": "1",
            "description": "Notification delivery engine with a preference center.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """This API's OpenAPI document."""
    return web.json_response(build(request.app))
