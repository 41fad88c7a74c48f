"""The API as an OpenAPI 3.1 document, served at /openapi.json. The request bodies are the JSON
schemas of the pydantic models the handlers validate with (adapters/http/bodies.py)."""

from __future__ import annotations

from typing import Any

from rems_ingest.adapters.http.bodies import EnrollBody, EventBody, ReassignBody, UnenrollBody, VoidBody
from rems_ingest.core.dispense import DISPENSE_CODES
from rems_ingest.service.access import GRANTS, Permission
from rems_ingest.service.commands import TEXT_LIMIT

_TEXT = {"type": "string", "maxLength": TEXT_LIMIT}
_DATE = {"type": "string", "format": "date"}
_ERROR = {"type": "object", "required": ["error", "detail"], "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
_OBJECT = {"type": "object"}


def _roles(p: Permission) -> str:
    return ", ".join(sorted(r.value for r, grants in GRANTS.items() if p in grants))


_DISPENSE = {
    "type": "object",
    "required": ["authorized", "code", "reason", "max_days_supply", "on"],
    "properties": {
        "authorized": {"type": "boolean", "description": "false whenever there is any doubt"},
        "code": {"type": "string", "enum": sorted(DISPENSE_CODES), "description": "; ".join(f"{k}: {v}" for k, v in sorted(DISPENSE_CODES.items()))},
        "reason": {"type": "string"},
        "warning": {"type": ["string", "null"]},
        "latest_anc": {"type": ["object", "null"]},
        "window_days": {"type": ["integer", "null"]},
        "max_days_supply": {"type": "integer"},
        "on": _DATE,
    },
}
_PATIENT = {"type": "object", "description": "the patient's status (GET /v1/patients/{id}); an event also returns alerts_raised, and duplicate: true for a repeated event_id"}


def _op(summary: str, permission: Permission | None, ok: int = 200, body: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None, returns: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {str(ok): {"description": "OK", "content": {"application/json": {"schema": returns or _OBJECT}}}}
    for code in ("400", "401", "403", "404", "405", "409", "413", "422", "429", "503"):
        responses[code] = {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
    op: dict[str, Any] = {"summary": summary + (f" (roles: {_roles(permission)})" if permission else ""), "responses": responses}
    if permission is None:
        op["security"] = []
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _q(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT}}

# generated from the models the handlers validate with (adapters/http/bodies.py)
ENROLL, EVENT, REASSIGN, UNENROLL, VOID = (m.model_json_schema(ref_template="#/components/schemas/{model}") for m in (EnrollBody, EventBody, ReassignBody, UnenrollBody, VoidBody))
_EVENT_ID = {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": TEXT_LIMIT}}


def openapi_document() -> dict[str, Any]:
    authority = _q("authority", _TEXT)
    return {
        "openapi": "3.1.0",
        "info": {"title": "rems-ingest", "version": "1", "description": "Clozapine ANC monitoring: enrollment, clinical events, status, dispense check."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API token (rems-ingest token create) or an OIDC JWT"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/patients": {"post": _op("Enroll a patient", Permission.ENROLL, 201, ENROLL)},
            "/v1/patients/{id}": {
                "get": _op("A patient's status", Permission.READ_PATIENT, params=[_ID, authority]),
                "patch": _op("Change a patient's prescriber or pharmacy", Permission.ENROLL, body=REASSIGN, params=[_ID, authority]),
                "delete": _op("Un-enroll (only before therapy starts or once monitoring has ended)", Permission.ENROLL, body=UNENROLL, params=[_ID, authority]),
            },
            "/v1/patients/{id}/events": {"post": _op("Record a clinical event (decisions: the patient's prescriber or a designee, or break glass; 200 for a repeated event_id)", Permission.RECORD_EVENT, 201, EVENT, [_ID, authority], _PATIENT)},
            "/v1/patients/{id}/events/{event_id}/void": {"post": _op("Void an event entered in error (its author, the care team, or the clinic)", Permission.RECORD_EVENT, 200, VOID, [_ID, _EVENT_ID, authority], _PATIENT)},
            "/v1/patients/{id}/dispense-check": {"get": _op("May clozapine be dispensed?", Permission.CHECK_DISPENSE, params=[_ID, authority, _q("on", _DATE)], returns=_DISPENSE)},
            "/v1/sweeps/overdue": {"post": _op("Run the overdue sweep", Permission.RUN_SWEEP, params=[_q("now", {"type": "string", "format": "date-time"})])},
            "/v1/admin/reload-rules": {"post": _op("Reload the rules profile", Permission.RELOAD_RULES)},
            "/v1/audit": {"get": _op("The access trail", Permission.READ_AUDIT, params=[_q("patient", _TEXT), authority])},
            "/healthz": {"get": _op("Alive", None)},
            "/readyz": {"get": _op("Ready (503 with reasons when not)", None)},
        },
    }
