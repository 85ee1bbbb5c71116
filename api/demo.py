"""The API part of `dmp demo`: real HTTP requests against the app served on a loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from pipeline.access.tokens import mint_token
from pipeline.core.identity import with_key
from pipeline.core.settings import Settings
from pipeline.index.models import Notification
from pipeline.index.queries import fullest_record, notifications_of, sent_notification
from pipeline.index.queries import patient as find_patient
from pipeline.runtime import Runtime

PHYSICIAN, BLOCKED, EMERGENCY = "10000000001", "10000000002", "10000000003"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _call(
    base: str, method: str, path: str, token: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            kind = response.headers.get("Content-Type", "")
            return response.status, json.loads(raw) if "json" in kind else raw
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _wait_for_sent(rt: Runtime, patient_id: str, kind: str, timeout: float = 10) -> Notification | None:
    """The API process sends an emergency notification right after the access; wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.sessions() as session:
            sent = sent_notification(session, patient_id, kind)
        if sent is not None:
            return sent
        time.sleep(0.1)
    return None


def _show_notifications(rt: Runtime, settings: Settings, patient_id: str, echo: Callable[[str], None]) -> None:
    """Send what is pending without waiting for the coalescing window, and show the patient's messages."""
    from pipeline.notify.channels import channels_from_settings
    from pipeline.notify.dispatch import dispatch

    report = dispatch(rt, channels_from_settings(settings), flush=True)
    echo(f"\nNotifications: {report.composed} more composed, {report.sent} sent (one per patient per event, deposits coalesced)")
    with rt.sessions() as session:
        mine = notifications_of(session, patient_id)
    for n in mine:
        echo(f"  to {n.recipient_id[:12]:<12} via {n.channel:<5} {n.subject}: {n.body.splitlines()[0]}")
    echo(f"  (no email or SMS channel configured: messages are in the local log sink {settings.resolved_notify_log_file()})")


def _show_portal(rt: Runtime, base: str, echo: Callable[[str], None], serving: bool) -> None:
    """The portal's address and the identities its sign-in page offers on this machine."""
    from api.portal.demo import demo_identities

    echo(f"\nPortal: {base}/  (sign in with one of these demo identities, offered on this machine only)")
    for identity in demo_identities(rt):
        claims = identity.claims
        who = f"patient {claims.subject}  INS {identity.ins}" if claims.kind == "patient" else f"{claims.profession} RPPS {claims.rpps}"
        echo(f"  {who}")
    if not serving:
        echo("  (it stopped with this demo: `dmp demo --portal` keeps it up, or serve it with `dmp api`)")


def run_api_demo(settings: Settings, echo: Callable[[str], None], serve_portal: bool = False) -> None:
    """Serve the API, then walk through the consented-reads scenario and print what happens; with
    `serve_portal`, keep serving the portal afterwards until interrupted."""
    import uvicorn

    from api.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    rt = Runtime.from_settings(settings)
    try:
        with rt.sessions() as session:
            fullest = fullest_record(session)
        if fullest is None:
            raise RuntimeError("the demo needs an indexed document")
        patient_id, count = fullest

        def token(sub: str, kind: str, profession: str | None = None, rpps: str | None = None) -> str:
            return mint_token(settings, sub, kind, profession=profession, rpps=rpps)

        def doctor(rpps: str) -> str:
            return token(rpps, "professional", profession="physician", rpps=rpps)

        patient = token(patient_id, "patient")
        record = f"/v1/patients/{patient_id}"

        echo(f"\nAPI on {base} — patient {patient_id} ({count} documents)")
        status, listing = _call(base, "GET", f"{record}/documents", patient)
        echo(f"  patient lists the record: {status}, {listing['total']} documents")
        first = listing["items"][0]["id"]
        _lookup_scene(rt, base, patient_id, doctor(PHYSICIAN), token("CPAM-75", "insurer"), echo)
        _call(base, "POST", f"{record}/professionals/{PHYSICIAN}/authorize", patient)
        _, found = _call(base, "POST", "/v1/records/lookup", doctor(PHYSICIAN), {"ins": _ins_of(rt, patient_id)})
        echo(f"  the patient authorizes {PHYSICIAN}; the same lookup now answers: access {found['access']}")
        status, body = _call(base, "GET", f"{record}/documents/{first}/content", doctor(PHYSICIAN))
        echo(f"  authorized physician {PHYSICIAN} reads a document: {status}, {len(body)} bytes")
        _call(base, "POST", f"{record}/professionals/{BLOCKED}/block", patient)
        status, body = _call(base, "GET", f"{record}/documents/{first}", doctor(BLOCKED))
        echo(f"  blocked professional {BLOCKED}: {status} {body.get('code')}")
        status, body = _call(base, "GET", f"{record}/documents", token("CPAM-75", "insurer"))
        echo(f"  an insurer (never allowed, not even to learn the record exists): {status} {body.get('code')}")
        reason = "patient unconscious after a road accident"
        status, _ = _call(base, "GET", f"{record}/documents/{first}", doctor(EMERGENCY), headers={"X-Emergency-Reason": reason})
        echo(f"  emergency access by {EMERGENCY} ('{reason}'): {status}")
        told = _wait_for_sent(rt, patient_id, "emergency_access")
        if told is not None:
            echo(f"  the patient is told at once ({told.channel}): {told.subject} — {told.body.splitlines()[0]}")
        status, log = _call(base, "GET", f"{record}/access-log?limit=1000", patient)
        echo(f"  patient reads the access log: {status}, {len(log)} entries; the latest:")
        for entry in log[-6:]:
            flag = f" EMERGENCY: {entry['justification']}" if entry["emergency"] else ""
            who = f"{entry['actor_kind']:<12} {entry['actor_id']:<36}"
            echo(f"    {entry['at'][:19]} {who} {entry['action']:<18} {entry['outcome']:<7} {entry['reason']}{flag}")
        show_record_over_time(base, rt, settings, patient_id, echo)
        _show_notifications(rt, settings, patient_id, echo)
        _show_portal(rt, base, echo, serve_portal)
        if serve_portal:
            echo("Serving the portal until Ctrl-C.")
            try:
                while thread.is_alive():
                    thread.join(timeout=0.5)
            except KeyboardInterrupt:
                pass
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        rt.close()


def _ins_of(rt: Runtime, patient_id: str) -> str:
    with rt.sessions() as session:
        found = find_patient(session, patient_id)
    assert found is not None
    return found.ins


def _lookup_scene(rt: Runtime, base: str, patient_id: str, physician: str, insurer: str, echo: Callable[[str], None]) -> None:
    """A professional finds the record by the patient's INS (POST /v1/records/lookup); an insurer learns nothing."""
    ins = _ins_of(rt, patient_id)
    masked = f"{ins[:5]}…{ins[-2:]}"
    status, found = _call(base, "POST", "/v1/records/lookup", physician, {"ins": ins})
    echo(f"  physician {PHYSICIAN} looks the record up by INS {masked}: {status} record {found['record']}, {found['status']}, "
         f"access {found['access']}, attending physician: {found['attending_physician']}")  # fmt: skip
    _, by_insurer = _call(base, "POST", "/v1/records/lookup", insurer, {"ins": ins})
    _, nobody = _call(base, "POST", "/v1/records/lookup", insurer, {"ins": with_key("2991299123456")})  # no such record
    same = "the same" if by_insurer == nobody else "NOT the same"
    echo(f"  an insurer looking the same INS up gets {by_insurer}: {same} as for an INS without a record")


# ---------------------------------------------------------------------------------------------
# Documents over time and the patient's contributions (issue 16)


def _multipart(metadata: dict[str, str], name: str, content: bytes) -> tuple[bytes, str]:
    """A `metadata` JSON part and a `file` part, as /v1/ingest/documents and the patient's upload take them."""
    boundary = f"dmp-demo-{time.time_ns()}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\nContent-Type: application/json\r\n\r\n'.encode()
        + json.dumps(metadata).encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\nContent-Type: text/plain\r\n\r\n'.encode()
        + content,
    ]
    return b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _upload(base: str, path: str, credential: str, metadata: dict[str, str], name: str, content: bytes) -> tuple[int, Any]:
    body, kind = _multipart(metadata, name, content)
    request = urllib.request.Request(base + path, data=body, method="POST")
    request.add_header("Authorization", f"Bearer {credential}")
    request.add_header("Content-Type", kind)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _final_item(base: str, url: str, credential: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, status = _call(base, "GET", url, credential)
        items = status.get("items") or [{}]
        if items[0].get("state") in ("indexed", "rejected") or time.monotonic() > deadline:
            return items[0]  # type: ignore[no-any-return]
        time.sleep(0.2)


def _source_key(rt: Runtime, source: str) -> str:
    """A fresh API key for the demo's hospital (a re-run revokes the previous one)."""
    from pipeline.sources import SourceExists, add_source, revoke_source

    with rt.sessions() as session:
        try:
            return add_source(session, rt.hmac_secret, source)
        except SourceExists:
            revoke_source(session, source)
            return add_source(session, rt.hmac_secret, source)


def show_record_over_time(base: str, rt: Runtime, settings: Settings, patient_id: str, echo: Callable[[str], None]) -> None:
    """The hospital replaces one of its reports (the old version stays in the history), then the patient adds
    advance directives and a medical profile, which the physician in the care team reads."""
    from pipeline.index.queries import source_reference

    patient = mint_token(settings, patient_id, "patient")
    physician = mint_token(settings, PHYSICIAN, "professional", profession="physician", rpps=PHYSICIAN)
    record = f"/v1/patients/{patient_id}"
    _, listing = _call(base, "GET", f"{record}/documents?page_size=200", patient)
    report = next((d for d in listing["items"] if d["source"].startswith("hospital:")), None)
    with rt.sessions() as session:
        reference = source_reference(session, report["id"]) if report else None
    if report is None or reference is None:
        echo("\n(no hospital report to replace in this record)")
        return
    source, source_document_id, ins = reference
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    key = _source_key(rt, source)
    metadata = {"patient_ins": ins, "source_document_id": source_document_id, "title": f"Compte rendu corrigé ({stamp})",
                "document_type": report["type_code"], "service_date": report["service_date"] or time.strftime("%Y-%m-%d"),
                "author_id": PHYSICIAN, "author_profession": "physician", "version_action": "replace"}  # fmt: skip
    status, answer = _upload(base, "/v1/ingest/documents", key, metadata, "corrige.txt", f"Compte rendu corrigé le {stamp}.\n".encode())
    item = _final_item(base, answer["status_url"], key) if status == 202 else {}
    echo(f"\n{source} replaces its report {source_document_id} (version_action=replace): {status}, {item.get('state')}")
    if item.get("state") == "indexed":
        _, history = _call(base, "GET", f"{record}/documents/{item['document_id']}/history", patient)
        for version in history:
            echo(f"  version {version['version']}: {version['status']:<10} {version['id']}")
    directives = {"title": "Mes directives anticipées", "document_type": "EXPPAT_3"}
    text = f"Je soussigné(e) refuse tout acharnement thérapeutique ({stamp}).\n".encode()
    status, answer = _upload(base, f"{record}/documents", patient, directives, "directives.txt", text)
    item = _final_item(base, answer["status_url"], patient) if status == 202 else {}
    echo(f"the patient adds advance directives: {status}, {item.get('state')} as class {item.get('class_code')} {item.get('type_code')}")
    profile = {"allergies": ["pénicilline"], "blood_group": "O-", "organ_donation": "yes"}
    status, _ = _call(base, "PUT", f"{record}/medical-profile", patient, profile)
    read, seen = _call(base, "GET", f"{record}/medical-profile", physician)
    echo(f"the patient writes a medical profile: {status}")
    echo(f"  physician {PHYSICIAN} in the care team reads it: {read}, blood group {seen.get('blood_group')}")
