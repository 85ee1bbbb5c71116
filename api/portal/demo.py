"""The demo identities the embedded portal lets a visitor sign in as (loopback only), the same as `dmp demo`'s."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from api.demo import BLOCKED, EMERGENCY, PHYSICIAN
from pipeline.access.tokens import Claims
from pipeline.core.settings import is_loopback_host
from pipeline.index.queries import demo_patients
from pipeline.runtime import Runtime

PATIENTS_OFFERED = 12
PROFESSIONALS = ((PHYSICIAN, "physician"), (BLOCKED, "physician"), (EMERGENCY, "physician"))


@dataclass(frozen=True)
class DemoIdentity:
    key: str  # what the sign-in form posts
    claims: Claims
    ins: str | None = None


def demo_enabled(request: Request) -> bool:
    """The demo sign-in exists only in embedded mode (no identity provider, no broker) and to a visitor on this machine."""
    rt: Runtime = request.app.state.runtime
    settings = rt.settings
    client = request.client.host if request.client else ""
    no_provider = not settings.oidc_jwks_url and not settings.portal_oidc_issuer
    return no_provider and settings.embedded_broker and is_loopback_host(client)


def demo_identities(rt: Runtime) -> list[DemoIdentity]:
    """A few patients (the fullest records) and the demo's three physicians."""
    with rt.sessions() as session:
        patients = demo_patients(session, PATIENTS_OFFERED)
    offered = [DemoIdentity(f"patient:{pid}", Claims(subject=pid, kind="patient"), ins) for pid, ins in patients]
    for rpps, profession in PROFESSIONALS:
        claims = Claims(subject=rpps, kind="professional", profession=profession, rpps=rpps)
        offered.append(DemoIdentity(f"professional:{rpps}", claims))
    return offered
