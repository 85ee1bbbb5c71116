"""GET /v1/patients/{id}/documents paged: every page full and in order, the next one continuing it, the total
the count of what the actor may see, and documents hidden from the actor on no page."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from pipeline.access.tokens import mint_token
from pipeline.core.settings import Settings
from pipeline.index.models import Document
from pipeline.runtime import Runtime
from tests.conftest import index_batch


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One patient's 14 documents, every third held from the patient until an announcement next year."""
    from pipeline.samples import generate_samples

    root = tmp_path_factory.mktemp("listing")
    settings = Settings(home=root / "home")
    generate_samples(root / "batch", patients=1, documents=14, seed=15, bad=False)
    rt = Runtime.from_settings(settings, prepare=True)
    documents = sorted(index_batch(rt, root / "batch", "hospital:CHU-LIST"), key=lambda d: d.id)
    held = {d.id for d in documents[::3]}
    with rt.sessions.begin() as session:
        later = dt.date.today() + dt.timedelta(days=400)
        session.execute(update(Document).where(Document.id.in_(held)).values(hidden_from_patient_until=later))
        # Recently deposited: the one-month release after deposit has not come either.
        session.execute(update(Document).values(created_at=dt.datetime.now(dt.UTC)))
    pid = documents[0].patient_id
    headers = {"Authorization": f"Bearer {mint_token(settings, pid, 'patient')}"}
    with TestClient(create_app(settings)) as client:
        yield client, f"/v1/patients/{pid}/documents", headers, {d.id for d in documents}, held
    rt.close()


def _page(client, url, headers, page, page_size):  # type: ignore[no-untyped-def]
    response = client.get(url, params={"page": page, "page_size": page_size}, headers=headers)
    assert response.status_code == 200
    return response.json()


def test_pages_of_three_are_full_in_order_and_add_up_to_the_whole_list(world):
    client, url, headers, _, _ = world
    whole = _page(client, url, headers, 1, 200)
    pages = [_page(client, url, headers, n, 3) for n in range(1, 6)]
    assert [len(p["items"]) for p in pages] == [3, 3, 3, 0, 0]  # 9 shown of 14: the last page is full too
    assert [d["id"] for p in pages for d in p["items"]] == [d["id"] for d in whole["items"]]
    assert {p["total"] for p in pages} == {whole["total"]} == {9}


def test_a_document_held_from_the_patient_is_on_no_page_and_in_no_count(world):
    client, url, headers, every, held = world
    listed = {d["id"] for n in range(1, 8) for d in _page(client, url, headers, n, 2)["items"]}
    assert listed == every - held and _page(client, url, headers, 1, 2)["total"] == len(every - held)


def test_a_page_is_written_as_its_response_model_writes_it(world):
    from api.routes.documents import DocumentPage

    client, url, headers, _, _ = world
    response = client.get(url, params={"page": 1, "page_size": 4}, headers=headers)
    assert response.content == DocumentPage.model_validate(response.json()).model_dump_json().encode()
