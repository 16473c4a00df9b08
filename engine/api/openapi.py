"""`/v1/openapi.json`: the OpenAPI 3.1 document, read from the routes as registered.

Every documented operation comes from a route's `@operation` contract: its path,
query and header models become parameters, its body model the request body, its
answer models the responses per status, and its `@scope` the security requirement.
The recipient's pages and their assets are HTML for browsers and are left out.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from engine.api.context import scope_of
from engine.api.contract import Contract, contract_of, operation
from engine.schemas.answers import DocumentOut, ErrorOut

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"
ERRORS = {
    "400": "Unparseable JSON (`invalid_json`).",
    "401": "No API key, or an unknown or revoked one.",
    "403": "The key lacks the scope this call needs.",
    "404": "No such path or id.",
    "405": "Method not allowed here (see the `Allow` header).",
    "413": "The body is too large.",
    "415": "The body's Content-Type is not JSON in UTF-8 (`unsupported_media_type`).",
    "422": "A field does not take that value; `field` names it.",
    "503": "The database or Redis is unavailable; try again.",
}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=ErrorOut.__name__)}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameters(model: type[BaseModel], where: str, defs: dict[str, Any]) -> list[dict[str, Any]]:
    """A model's fields as OpenAPI parameters `in` path, query or header."""
    schema = model.model_json_schema(ref_template=REF, by_alias=True)
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    out = []
    for name, field in schema.get("properties", {}).items():
        members = [m for m in field.get("anyOf", []) if m.get("type") != "null"]
        value = {**field, **members[0]} if len(members) == 1 else dict(field)
        value.pop("anyOf", None) if len(members) == 1 else None
        if value.get("default", ...) is None:
            del value["default"]
        param: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": {k: v for k, v in value.items() if k not in ("title", "description")},
        }
        if description := field.get("description"):
            param["description"] = description
        out.append(param)
    return out


def _operation(
    method: str, handler: Any, contract: Contract, models: set[type[BaseModel]]
) -> dict[str, Any]:
    doc = (handler.__doc__ or "").strip()
    summary, _, rest = doc.partition("\n")
    op: dict[str, Any] = {
        "operationId": handler.__name__,
        "summary": summary.strip(),
        "responses": {},
    }
    description = " ".join(line.strip() for line in rest.splitlines()).strip()
    needed = scope_of(handler)
    if needed:
        op["security"] = [{"bearer": []}]
        description = f"Needs an API key with the `{needed}` scope (or `admin`). {description}"
    if description.strip():
        op["description"] = description.strip()
    defs: dict[str, Any] = {}
    parameters = []
    for model, where in (
        (contract.path, "path"),
        (contract.query, "query"),
        (contract.headers, "header"),
    ):
        if model is not None:
            parameters += _parameters(model, where, defs)
    if parameters:
        op["parameters"] = parameters
    if contract.body is not None:
        models.add(contract.body)
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=contract.body.__name__)}}
            },
        }
    if contract.upload:
        content: dict[str, Any] = {}
        for media, line in contract.upload.items():
            if line is None:
                content[media] = {"schema": {"type": "string"}}
            else:
                models.add(line)
                # The schema of each line: OpenAPI 3.2's `itemSchema`, an extension in 3.1.
                content[media] = {
                    "schema": {"type": "string"},
                    "x-itemSchema": {"$ref": REF.format(model=line.__name__)},
                }
        op["requestBody"] = {"required": True, "content": content}
    for status, model in contract.responses.items():
        meaning = (model.__doc__ or "").strip()
        response: dict[str, Any] = {"description": meaning or HTTPStatus(status).phrase}
        if contract.media_type:
            response["content"] = {contract.media_type: {"schema": {"type": "string"}}}
        else:
            models.add(model)
            ref = {"$ref": REF.format(model=model.__name__)}
            response["content"] = {"application/json": {"schema": ref}}
        if headers := contract.response_headers.get(status):
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        op["responses"][str(status)] = response
    for status, text in contract.errors.items():
        op["responses"][str(status)] = _error(text)
    for code, text in ERRORS.items():
        if code in ("401", "403") and not needed:
            continue
        if code in ("400", "413", "415") and contract.body is None and not contract.upload:
            continue
        op["responses"].setdefault(code, _error(text))
    op["responses"]["default"] = _error("Any other error, in the same document.")
    op["_defs"] = defs
    return op


def build(app: web.Application) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every route of `app` that declares a contract."""
    paths: dict[str, dict[str, Any]] = {}
    models: set[type[BaseModel]] = {ErrorOut}
    defs: dict[str, Any] = {}
    for route in app.router.routes():
        contract = contract_of(route.handler)
        if contract is None or route.method in ("HEAD", "*"):
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("formatter") or info.get("path")
        if not path:
            continue
        op = _operation(route.method, route.handler, contract, models)
        defs.update(op.pop("_defs"))
        paths.setdefault(path, {})[route.method.lower()] = op
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
        by_alias=True,
    )
    components = {**defs, **schemas.get("$defs", {})}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "Tidings",
            "version": "1",
            "description": (
                "Notification delivery engine with a preference center. Errors are "
                '`{"error": {"code", "message", "field"}}`. The recipient\'s pages '
                "(`/p/…`, `/inbox/…`, `/u/…`) are HTML for browsers and not part of this API."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `tidings keys create`.",
                }
            },
        },
    }


@routes.get("/v1/openapi.json")
@operation(responses={200: DocumentOut})
async def openapi(request: web.Request) -> DocumentOut:
    """This API's OpenAPI document."""
    return DocumentOut(build(request.app))
