"""ITI-65 over real HTTP: `dmp api` on Redis, PostgreSQL and the S3 endpoint, `dmp worker` processes indexing;
then ITI-67 finds the documents and ITI-68 returns them byte-identical; a replay adds nothing."""

from __future__ import annotations

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select

from pipeline.access.tokens import mint_token
from pipeline.index.models import Patient, SubmissionSet
from tests.distributed.conftest import wait_until_final
from tests.distributed.test_ingest_http import _key, _snapshot
from tests.distributed.test_ingest_http import api as api  # the same `dmp api` starter
from tests.distributed.test_ingest_http import runtime as runtime
from tests.sharing.bundles import INS_SYSTEM, NIR, Doc, body, bundle, cda_bytes, pdf_bytes

pytestmark = pytest.mark.distributed
FHIR = {"Content-Type": "application/fhir+json"}


def test_a_bundle_provided_over_http_is_indexed_by_the_workers_found_and_retrieved_byte_identical(settings, runtime, workers, api):
    base = api()
    key = _key(settings, "hospital:CHU-MHD")
    workers.start(processes=2, threads=2)
    pdf, cda = pdf_bytes("Compte rendu distribué"), cda_bytes(NIR)
    provided = body(bundle([Doc(pdf), Doc(cda, content_type="application/xml", type_code="11502-2")], "urn:oid:1.2.250.1.999.7.1"))
    answer = httpx.post(base + "/fhir", content=provided, headers={**key, **FHIR}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert [e.response.status for e in Bundle.model_validate_json(answer.content).entry] == ["201 Created"] * 5
    with runtime.sessions() as session:
        batch_id = session.scalars(select(SubmissionSet.batch_id).where(SubmissionSet.unique_id == "urn:oid:1.2.250.1.999.7.1")).one()
    assert wait_until_final(runtime, batch_id, timeout=180) == {"total": 2, "indexed": 2, "rejected": 0}

    with runtime.sessions() as session:
        patient_id = session.scalars(select(Patient.id).where(Patient.ins == NIR)).one()
    patient = {"Authorization": f"Bearer {mint_token(settings, patient_id, 'patient')}"}
    found = httpx.get(base + "/fhir/DocumentReference", params={"patient.identifier": f"{INS_SYSTEM}|{NIR}"}, headers=patient, timeout=30)
    references = [entry.resource for entry in Bundle.model_validate_json(found.content).entry]
    retrieved = {r.content[0].attachment.contentType: httpx.get(str(r.content[0].attachment.url), headers=patient, timeout=30).content
                 for r in references}  # fmt: skip
    assert retrieved == {"application/pdf": pdf, "application/xml": cda}

    before = _snapshot(runtime)
    again = httpx.post(base + "/fhir", content=provided, headers={**key, **FHIR}, timeout=60)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
    assert _snapshot(runtime) == before
