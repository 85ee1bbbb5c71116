"""Portal sessions live in the index: any API process over the same database honours them and ends them."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from api.portal.sessions import COOKIE
from pipeline.index.models import PortalSessionRow
from tests.api.portal.conftest import LOOPBACK, client_of, csrf_of, sign_in


def test_a_session_made_by_one_api_process_is_valid_in_another(world) -> None:
    settings, _, app, patients, _, _ = world
    first = client_of(app)
    sign_in(first, f"patient:{patients[0]}")
    with TestClient(create_app(settings), client=LOOPBACK, follow_redirects=False) as second:
        second.cookies.set(COOKIE, first.cookies[COOKIE])
        assert second.get("/patient").status_code == 200


def test_signing_out_in_one_api_process_ends_the_session_in_another(world) -> None:
    settings, _, app, patients, _, _ = world
    first = client_of(app)
    sign_in(first, f"patient:{patients[0]}")
    with TestClient(create_app(settings), client=LOOPBACK, follow_redirects=False) as second:
        second.cookies.set(COOKIE, first.cookies[COOKIE])
        assert second.post("/signout", data={"csrf": csrf_of(second.get("/patient").text)}).status_code == 303
    assert first.get("/patient").headers["location"] == "/"


def test_the_index_holds_neither_the_session_id_nor_its_csrf_token_in_clear(world) -> None:
    _, rt, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    cookie, token = client.cookies[COOKIE], csrf_of(client.get("/patient").text)
    with rt.sessions() as session:
        rows = list(session.scalars(select(PortalSessionRow)))
    assert rows
    assert all(cookie not in row.id_hash and cookie.encode() not in row.content_sealed for row in rows)
    assert all(token.encode() not in row.content_sealed and patients[0].encode() not in row.content_sealed for row in rows)


def test_an_expired_session_signs_nobody_in_and_its_row_is_purged(world) -> None:
    _, rt, app, patients, _, _ = world
    client = client_of(app)
    sign_in(client, f"patient:{patients[0]}")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with rt.sessions() as session:
        session.execute(update(PortalSessionRow).values(expires_at=past))
        session.commit()
    assert client.get("/patient").headers["location"] == "/"
    assert app.state.portal_sessions.purge() >= 1
    with rt.sessions() as session:
        assert session.scalars(select(PortalSessionRow).where(PortalSessionRow.expires_at <= past)).first() is None


def test_a_break_glass_reason_given_in_one_api_process_holds_in_another(world) -> None:
    settings, _, app, patients, _, ins = world
    pro = client_of(app)
    sign_in(pro, "professional:10000000003")
    form = pro.get(f"/pro/records/{patients[1]}/emergency")
    assert pro.post(f"/pro/records/{patients[1]}/emergency", data={"csrf": csrf_of(form.text), "reason": "Coma"}).status_code == 303
    session = app.state.portal_sessions.get(pro.cookies[COOKIE])
    with TestClient(create_app(settings), client=LOOPBACK, follow_redirects=False) as second:
        assert second.app.state.portal_sessions.get(pro.cookies[COOKIE]).emergency_reason(patients[1]) == "Coma"
    assert session.emergency_reason(patients[1]) == "Coma"
