"""The JSON request bodies, as pydantic models: each handler validates its body with its model,
and /openapi.json is generated from the same models (adapters/http/openapi.py), so the document
cannot say one thing while the handler checks another. The typed command (service/commands.py)
is built from the validated body and checks the rules of a valid request once more."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rems_ingest.core.errors import InvalidInput
from rems_ingest.service.commands import BASELINE_MAX, RATIONALE_LIMIT, TEMPERATURE_RANGE, TEXT_LIMIT

_TEXT = Field("", max_length=TEXT_LIMIT)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class EnrollBody(_Body):
    id: str = Field(min_length=1, max_length=TEXT_LIMIT)
    authority: str = _TEXT
    population: Literal["general", "ben"]
    therapy_start: date
    baseline_anc: float | None = Field(None, ge=0, le=float(BASELINE_MAX))
    monitoring_frequency: Literal["weekly", "every_2_weeks", "monthly"] | None = None
    prescriber_id: str = _TEXT
    pharmacy_id: str = _TEXT


class EventBody(_Body):
    type: Literal["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]
    on: date
    rationale: str = Field("", max_length=RATIONALE_LIMIT)
    abrupt: bool = True
    temperature_c: float | None = Field(None, ge=float(TEMPERATURE_RANGE[0]), le=float(TEMPERATURE_RANGE[1]))
    event_id: str = _TEXT
    by: str = Field("", max_length=TEXT_LIMIT, description="ignored unless equal to the authenticated subject, who is the event's author")


class ReassignBody(_Body):
    prescriber_id: str | None = Field(None, max_length=TEXT_LIMIT)
    pharmacy_id: str | None = Field(None, max_length=TEXT_LIMIT)


class UnenrollBody(_Body):
    reason: str = Field(min_length=1, max_length=RATIONALE_LIMIT)


def validated(model: type[_Body], body: dict[str, Any]) -> dict[str, Any]:
    """The body as its model reads it (JSON-ready), or InvalidInput naming the first problem."""
    try:
        return model.model_validate(body).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidInput(f"{where}: {err['msg']}") from None
