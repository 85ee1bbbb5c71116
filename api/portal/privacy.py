"""What the patient controls, as forms: each POST is the matching API call (gate, then pipeline.access.controls).

Every form carries the session's CSRF token (`FormDep`); every action is decided and audited before it is done.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from starlette.responses import Response, StreamingResponse

from api.portal import reading
from api.portal.web import FormDep, PageRefused, PatientDep, page, redirect
from api.routes.export import record_copy
from api.routes.record import EMAIL_PATTERN, PHONE_PATTERN
from pipeline.access import careteam, controls
from pipeline.access.policy import Action
from pipeline.core.identity import MAX_ACTOR_ID, is_identifier
from pipeline.index.queries import notifications_of
from pipeline.index.queries import patient as find_patient
from pipeline.notify.contacts import read_contact

router = APIRouter(prefix="/patient", include_in_schema=False)
DOCUMENT_ACTIONS = {
    "mask": (Action.MASK, controls.set_masked, True),
    "unmask": (Action.UNMASK, controls.set_masked, False),
    "hide-from-representatives": (Action.HIDE_FROM_REPRESENTATIVES, controls.set_hidden_from_representatives, True),
    "show-to-representatives": (Action.SHOW_TO_REPRESENTATIVES, controls.set_hidden_from_representatives, False),
}


@router.post("/documents/{document_id}/{change}")
def change_document(document_id: str, change: str, visit: PatientDep, form: FormDep) -> Response:
    """POST /v1/patients/{id}/documents/{doc}/mask (unmask, hide-from-representatives, show-to-representatives)."""
    if change not in DOCUMENT_ACTIONS:
        raise PageRefused("not_found")
    action, apply, value = DOCUMENT_ACTIONS[change]
    reading.allowed(visit, action, visit.record, document_id)
    apply(visit.rt, document_id, value)
    return redirect(f"/patient/documents/{document_id}?done={change}")


@router.get("/privacy")
def privacy(visit: PatientDep) -> Response:
    """The record's settings: the care team, blocked professionals, the attending physician, emergency opposition
    (decided and audited as reading the care team)."""
    record = reading.allowed(visit, Action.READ_CARE_TEAM, visit.record).record  # GET …/care-team
    team = careteam.care_team(visit.rt, visit.record)
    done = visit.request.query_params.get("done", "")
    return page(visit, "patient/privacy.html", record=record, team=team, done=done if done.replace("_", "").isalpha() else "")


def _professional(form: FormDep, name: str = "professional_id") -> str:
    value = str(form.get(name, "")).strip()
    if not is_identifier(value, MAX_ACTOR_ID):
        raise PageRefused("invalid_professional", 422)
    return value


@router.post("/professionals")
def professional(visit: PatientDep, form: FormDep) -> Response:
    """POST …/professionals/{rpps}/authorize or /block."""
    rpps = _professional(form)
    standing = form.get("standing")
    if standing not in ("authorized", "blocked"):
        raise PageRefused("not_found")
    action = Action.AUTHORIZE_PROFESSIONAL if standing == "authorized" else Action.BLOCK_PROFESSIONAL
    reading.allowed(visit, action, visit.record)
    controls.set_standing(visit.rt, visit.record, rpps, "authorized" if standing == "authorized" else "blocked")
    return redirect(f"/patient/privacy?done={standing}")


@router.post("/consents/revoke")
def revoke_consent(visit: PatientDep, form: FormDep) -> Response:
    """DELETE …/consents/{rpps}: the patient withdraws the consent a professional declared."""
    rpps = _professional(form)
    reading.allowed(visit, Action.REVOKE_CONSENT, visit.record)
    careteam.revoke_consent(visit.rt, visit.record, rpps)
    return redirect("/patient/privacy?done=revoked")


@router.post("/attending-physician")
def attending_physician(visit: PatientDep, form: FormDep) -> Response:
    """PUT …/attending-physician (an empty field: none)."""
    chosen = _professional(form, "physician_id") if str(form.get("physician_id", "")).strip() else None
    reading.allowed(visit, Action.SET_ATTENDING_PHYSICIAN, visit.record)
    controls.set_attending_physician(visit.rt, visit.record, chosen)
    return redirect("/patient/privacy?done=attending")


@router.post("/emergency-opposition")
def emergency_opposition(visit: PatientDep, form: FormDep) -> Response:
    """PUT …/emergency-opposition."""
    reading.allowed(visit, Action.OPPOSE_EMERGENCY, visit.record)
    controls.set_emergency_opposition(visit.rt, visit.record, form.get("opposed") == "yes")
    return redirect("/patient/privacy?done=opposition")


@router.get("/close")
def close_confirmation(visit: PatientDep) -> Response:
    """What closing means, and the confirmation asked for (a checked box and the button). Nothing of the record is
    read here, so nothing is audited: the closing itself is, when confirmed."""
    return page(visit, "patient/close.html", error=False)


@router.post("/close")
def close(visit: PatientDep, form: FormDep) -> Response:
    """POST …/close, once the patient ticked the confirmation; then the session ends (the record reads no more)."""
    if form.get("confirm") != "yes":
        return page(visit, "patient/close.html", status=422, error=True)
    reading.allowed(visit, Action.CLOSE_RECORD, visit.record)
    controls.close_record(visit.rt, visit.record)
    return page(visit, "patient/closed.html")


@router.get("/notifications")
def notifications(visit: PatientDep) -> Response:
    """GET …/notifications, and the messages sent to the patient."""
    me = visit.record
    reading.allowed(visit, Action.READ_NOTIFICATIONS, me)
    with visit.rt.sessions() as session:
        patient = find_patient(session, me)
        contact = read_contact(visit.rt, session, me)
        sent = list(notifications_of(session, me))[-20:][::-1]
    return page(visit, "patient/notifications.html", patient=patient, contact=contact, sent=sent, error=None)


@router.post("/notifications")
def set_notifications(visit: PatientDep, form: FormDep) -> Response:
    """PUT …/notifications; an address that is not one is refused with the form shown again."""
    email = str(form.get("email_address", "")).strip() or None
    phone = str(form.get("phone", "")).strip() or None
    if (email and not re.fullmatch(EMAIL_PATTERN, email)) or (phone and not re.fullmatch(PHONE_PATTERN, phone)):
        raise PageRefused("invalid_address", 422)
    reading.allowed(visit, Action.SET_NOTIFICATIONS, visit.record)
    choices = controls.NotificationChoices(
        email=form.get("email") == "yes", sms=form.get("sms") == "yes", every_access=form.get("every_access") == "yes",
        documents=form.get("documents") == "yes", reimbursements=form.get("reimbursements") == "yes",
        email_address=email, phone=phone,
    )  # fmt: skip
    controls.set_notifications(visit.rt, visit.record, choices)
    return redirect("/patient/notifications?done=1")


@router.get("/export")
def export(visit: PatientDep) -> Response:
    """GET …/export: the whole record as a zip."""
    access = reading.allowed(visit, Action.EXPORT, visit.record)
    log_access = reading.allowed(visit, Action.READ_ACCESS_LOG, visit.record)
    headers = {"Content-Disposition": 'attachment; filename="dossier.zip"', "Cache-Control": "no-store"}
    copy = record_copy(visit.rt, visit.actor, access, log_access)
    return StreamingResponse(copy, media_type="application/zip", headers=headers)
