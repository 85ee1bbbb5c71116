"""Bounded input (api/inputs.py, and the token claims of pipeline/access/tokens.py): what a request carries into the
index is refused with a reason (401 for a token, 422 for a path, query or body) before it gets there,
alike on SQLite (which would store anything) and PostgreSQL (which would fail with a 500)."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from pipeline.access.tokens import _load_private_key, ensure_signing_key, mint_token
from pipeline.core.settings import Settings
from pipeline.index.models import AuditEntry, Contact, Patient, RecordRelation
from pipeline.runtime import Runtime
from tests.conftest import index_batch


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """A record with documents on SQLite or PostgreSQL, and a client that shows a 500 as a 500."""
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp(f"inputs-{request.param}")
    database = None
    if request.param == "postgresql":
        from infra.services import PostgresDatabase

        database = PostgresDatabase()
        database.start()
    settings = Settings(home=root / "home", database_url=database.url if database else None)
    generate_samples(root / "batch", patients=1, documents=2, seed=3, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    patient_id = index_batch(rt, root / "batch", "hospital:CHU-INPUTS")[0].patient_id
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield settings, rt, client, patient_id
    rt.close()
    if database is not None:
        database.stop()


def _signed(settings: Settings, **claims: object) -> dict[str, str]:
    """A correctly signed token carrying `claims` as they are (mint_token would refuse the bad ones)."""
    key = _load_private_key(ensure_signing_key(settings))
    payload = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "exp": int(time.time()) + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, key, algorithm='EdDSA')}"}


def _patient(settings: Settings, patient_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, patient_id, 'patient')}"}


def _problem(response) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    assert response.headers["content-type"].startswith("application/problem+json"), response.text[:200]
    return response.status_code, response.json()["code"]


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "1" * 129, "kind": "patient"},
        {"sub": "1" * 200, "kind": "professional", "profession": "physician", "rpps": "1" * 11},
        {"sub": "10001234567", "kind": "professional", "profession": "p" * 100, "rpps": "10001234567"},
        {"sub": "10001234567", "kind": "professional", "profession": "physician", "rpps": "1" * 65},
        {"sub": "10001234567", "kind": "professional", "profession": "physician", "rpps": "1", "facility": "f" * 129},
        {"sub": "10001234567", "kind": "professional", "profession": "physician", "rpps": "1", "specialty": "s" * 65},
        {"sub": "1000\x001234567", "kind": "patient"},
        {"sub": " 10001234567", "kind": "patient"},
        {"sub": "médecin", "kind": "patient"},
    ],
    ids=["sub-129", "sub-200", "profession-100", "rpps-65", "facility-129", "specialty-65", "sub-nul", "sub-space", "sub-non-ascii"],
)
def test_a_token_claim_longer_than_its_column_or_not_printable_ascii_is_401_invalid_claims(world, claims):
    settings, _, client, patient_id = world
    response = client.get(f"/v1/patients/{patient_id}/documents", headers=_signed(settings, **claims))
    assert _problem(response) == (401, "invalid_claims")


def test_a_subject_is_bounded_at_128_characters_the_width_of_the_actor_columns(world):
    settings, rt, client, patient_id = world
    url = f"/v1/patients/{patient_id}/documents"
    assert _problem(client.get(url, headers=_signed(settings, sub="1" * 129, kind="patient"))) == (401, "invalid_claims")
    # Another patient: the answer of a record that does not exist.
    assert _problem(client.get(url, headers=_signed(settings, sub="1" * 128, kind="patient"))) == (404, "not_found")
    with rt.sessions() as session:  # the refusal is in the audit chain under the whole subject
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.actor_id == "1" * 128)) == 1


NOT_ACTOR_IDS = {"129": "x" * 129, "60k": "x" * 60_000, "empty": "", "nul": "10001\x00234567", "newline": "1000 \n"}


@pytest.mark.parametrize("physician_id", NOT_ACTOR_IDS.values(), ids=NOT_ACTOR_IDS.keys())
def test_an_attending_physician_id_that_is_not_an_actor_id_is_422_and_not_stored(world, physician_id):
    settings, rt, client, patient_id = world
    url, headers = f"/v1/patients/{patient_id}/attending-physician", _patient(settings, patient_id)
    response = client.put(url, json={"physician_id": physician_id}, headers=headers)
    assert _problem(response) == (422, "invalid_request")
    assert "physician_id" in response.json()["detail"]
    with rt.sessions() as session:
        assert session.get(Patient, patient_id).attending_physician_id is None


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_json_body_over_64_kib_is_413_and_changes_nothing(world, chunked):
    settings, rt, client, patient_id = world
    body = b'{"physician_id": "' + b"x" * 5_000_000 + b'"}'
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    headers = {**_patient(settings, patient_id), "Content-Type": "application/json"}
    response = client.put(f"/v1/patients/{patient_id}/attending-physician", content=content, headers=headers)
    assert _problem(response) == (413, "payload_too_large")
    assert response.json()["limit_bytes"] == 65536
    with rt.sessions() as session:
        assert session.get(Patient, patient_id).attending_physician_id is None


@pytest.mark.parametrize("professional_id", ["9" * 129, "9" * 5000, "10001%00234567", "1000%0A"], ids=["129", "5k", "nul", "newline"])
@pytest.mark.parametrize("action", ["authorize", "block"])
def test_a_professional_id_in_the_path_that_is_not_an_actor_id_is_422_and_not_stored(world, professional_id, action):
    settings, rt, client, patient_id = world
    url = f"/v1/patients/{patient_id}/professionals/{{}}/{action}"
    response = client.post(url.format(professional_id), headers=_patient(settings, patient_id))
    assert _problem(response) == (422, "invalid_request")
    assert client.post(url.format("7" * 128), headers=_patient(settings, patient_id)).status_code == 200
    with rt.sessions() as session:
        stored = set(session.scalars(select(RecordRelation.actor_id).where(RecordRelation.patient_id == patient_id)))
    assert stored == {"7" * 128}


@pytest.mark.parametrize(
    "query",
    ["class_code=" + "1" * 9, "type_code=" + "t" * 33, "class_code=1%000", "type_code=%00", "from=0", "to=0"],
)
def test_a_list_filter_beyond_its_column_or_not_a_calendar_date_is_422(world, query):
    settings, _, client, patient_id = world
    response = client.get(f"/v1/patients/{patient_id}/documents?{query}", headers=_patient(settings, patient_id))
    assert _problem(response) == (422, "invalid_request")


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("emergency-opposition", {"opposed": 1}),
        ("emergency-opposition", {"opposed": "true"}),
        ("notifications", {"email": 1, "sms": False}),
        ("notifications", {"email": True, "sms": 0}),
        ("notifications", {"email": True, "sms": False, "every_access": "yes"}),
        ("notifications", {"email": True, "sms": False, "documents": 0.0}),
        ("notifications", {"email": True, "sms": False, "every_acces": True}),  # misspelt: not taken as absent
        ("emergency-opposition", {"opposed": True, "until": "2099-01-01"}),  # a field the route does not have
    ],
)
def test_a_boolean_of_another_type_or_a_field_the_body_does_not_have_is_422_and_changes_nothing(world, route, body):
    settings, rt, client, patient_id = world
    with rt.sessions() as session:
        before = session.get(Patient, patient_id)
        before = (before.emergency_opposed, before.notify_email, before.notify_sms, before.notify_every_access, before.notify_documents)
    response = client.put(f"/v1/patients/{patient_id}/{route}", json=body, headers=_patient(settings, patient_id))
    assert _problem(response) == (422, "invalid_request")
    with rt.sessions() as session:
        after = session.get(Patient, patient_id)
        assert (after.emergency_opposed, after.notify_email, after.notify_sms, after.notify_every_access, after.notify_documents) == before


def test_an_email_address_longer_than_its_column_is_422_and_not_stored(world):
    settings, rt, client, patient_id = world
    address = "a" * 64 + "@" + "b" * 189 + ".example"  # matches the address pattern: 262 characters
    body = {"email": True, "sms": False, "email_address": address}
    response = client.put(f"/v1/patients/{patient_id}/notifications", json=body, headers=_patient(settings, patient_id))
    assert _problem(response) == (422, "invalid_request")
    professional = {"Authorization": f"Bearer {mint_token(settings, '10001234567', 'professional', profession='nurse', rpps='1')}"}
    assert _problem(client.put("/v1/me/contact", json={"email": address}, headers=professional)) == (422, "invalid_request")
    with rt.sessions() as session:
        owners = Contact.id.in_([patient_id, "10001234567"])
        stored = select(func.count()).select_from(Contact).where(owners, Contact.email_sealed.is_not(None))
        assert session.scalar(stored) == 0


@pytest.fixture(scope="module")
def source_key(world):
    from pipeline.sources import add_source

    _, rt, _, _ = world
    with rt.sessions() as session:
        return add_source(session, rt.hmac_secret, "hospital:CHU-INPUTS")


@pytest.mark.parametrize("batch_id", ["%00", "a%0Ab"], ids=["nul", "newline"])
@pytest.mark.parametrize("route", ["batches", "feeds"])
def test_a_batch_or_feed_id_in_the_path_that_is_not_an_id_is_422(world, source_key, batch_id, route):
    _, _, client, _ = world
    response = client.get(f"/v1/ingest/{route}/{batch_id}", headers={"Authorization": f"Bearer {source_key}"})
    assert _problem(response) == (422, "invalid_request")
