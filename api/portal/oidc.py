"""Sign-in with OpenID Connect (authorization code + PKCE): filled in below when a provider is configured."""

from __future__ import annotations

from fastapi import APIRouter

from pipeline.core.settings import Settings


class PortalOidc:
    router: APIRouter

    @classmethod
    def from_settings(cls, settings: Settings) -> PortalOidc | None:
        return None
