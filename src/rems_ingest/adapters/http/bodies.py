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
    # strict (issue #26): an unknown field is a 422, never ignored ("planned": true must not
    # silently become an abrupt stop)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EnrollBody(_Body):
    id: str = Field(min_length=1, max_length=TEXT_LIMIT)
    authority: str = _TEXT
    population: Literal["general", "ben"]
    therapy_start: date
    baseline_anc: float | None = Field(None, ge=0, le=float(BASELINE_MAX))
    monitoring_frequency: Literal["weekly", "every_2_weeks", "monthly"] | None = None
    prescriber_id: str = _TEXT
    pharmacy_id: str = _TEXT
    designees: list[str] = Field([], max_length=20, description="the care team beside the prescriber: prescriber or clinic staff ids who may record decisions too")


class EventBody(_Body):
    type: Literal["interrupt", "resume", "discontinue", "rechallenge", "override", "stepdown_confirmed", "fever"]
    on: date
    rationale: str = Field("", max_length=RATIONALE_LIMIT)
    abrupt: bool = Field(True, description="discontinue only: true = an abrupt stop, false = a planned taper")
    temperature_c: float | None = Field(None, ge=float(TEMPERATURE_RANGE[0]), le=float(TEMPERATURE_RANGE[1]))
    event_id: str = Field("", max_length=TEXT_LIMIT, description="the client's id for this event (default: a new one): the same id with the same body again is a no-op answering as before; with another body 409")
    by: str = Field("", max_length=TEXT_LIMIT, description="optional: the server sets the author from the authenticated identity; a value sent must equal it (else 422)")
    break_glass: bool = Field(False, description="record a decision for a patient outside your care team anyway (needs break_glass_reason; the clinic is alerted)")
    break_glass_reason: str = Field("", max_length=RATIONALE_LIMIT)


class ReassignBody(_Body):
    prescriber_id: str | None = Field(None, max_length=TEXT_LIMIT)
    pharmacy_id: str | None = Field(None, max_length=TEXT_LIMIT)
    designees: list[str] | None = Field(None, max_length=20)


class VoidBody(_Body):
    reason: str = Field(min_length=1, max_length=RATIONALE_LIMIT, description="why the event was entered in error")


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
