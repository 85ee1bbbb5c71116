"""The words of a notification: what happened, when, by whom, and a link. Never medical content.

No title, type, class or care detail of any document ever reaches these texts: the patient's
mailbox and phone are not a secure channel (docs/domain.md, "Notifications").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipeline.core.clock import PARIS, as_utc
from pipeline.index.states import OutboxKind

PROFESSIONS_FR = {
    "physician": "médecin",
    "pharmacist": "pharmacien",
    "nurse": "infirmier",
    "midwife": "sage-femme",
    "dentist": "chirurgien-dentiste",
    "physiotherapist": "masseur-kinésithérapeute",
    "emergency_regulator": "médecin régulateur du SAMU",
}


@dataclass(frozen=True)
class Event:
    """What the text is built from: plain values read from the outbox rows."""

    kind: OutboxKind
    at: dt.datetime  # when it happened (the first event when several are coalesced)
    sources: tuple[str, ...] = ()  # depositing sources ("hospital:CHU-NICE") or "kind:actor id"
    profession: str | None = None
    count: int = 1  # documents added (documents_added) or shown (documents_released)


def _when(at: dt.datetime) -> str:
    local = as_utc(at).astimezone(PARIS)
    return local.strftime("le %d/%m/%Y à %H:%M")


def _who(source: str, profession: str | None) -> str:
    kind, _, ident = source.partition(":")
    if kind in ("hospital", "lab", "insurer"):
        return ident or source
    if kind == "patient":
        return "vous-même"  # a document the patient added (pipeline/documents/contributed.py)
    label = PROFESSIONS_FR.get(profession or kind, "professionnel de santé")
    return f"un {label} (identifiant {ident or source})"


def compose(event: Event, record_url: str) -> tuple[str, str]:
    """(subject, body) for `event`; the body ends with the link to the record."""
    when = _when(event.at)
    who = ", ".join(sorted({_who(s, event.profession) for s in event.sources})) or "un établissement"
    link = f"\n\nConsultez votre dossier : {record_url}"
    if event.kind == OutboxKind.DOCUMENTS_ADDED:
        plural = "nouveaux documents ont été ajoutés" if event.count != 1 else "nouveau document a été ajouté"
        return "Nouveaux documents dans votre dossier", f"{event.count} {plural} à votre dossier par {who} ({when}).{link}"
    if event.kind == OutboxKind.DOCUMENTS_RELEASED:
        # "Available now", not "added": they were deposited earlier, held until their announcement.
        shown = (
            "documents déposés par {} sont désormais consultables"
            if event.count != 1
            else "document déposé par {} est désormais consultable"
        )
        return "Nouveaux documents dans votre dossier", f"{event.count} {shown.format(who)} dans votre dossier ({when}).{link}"
    if event.kind == OutboxKind.DOCUMENT_WITHDRAWN:
        # What happened and by whom, never which document: its title or type could be the very error.
        return (
            "Un document a été retiré de votre dossier",
            f"Un document déposé par erreur dans votre dossier en a été retiré par {who} ({when}) ; il a été effacé.{link}",
        )
    if event.kind == OutboxKind.REIMBURSEMENT_DATA:
        return "Vos remboursements ont été mis à jour", f"Votre historique de soins a été mis à jour par {who} ({when}).{link}"
    if event.kind == OutboxKind.FIRST_ACCESS:
        return "Première consultation de votre dossier", f"Votre dossier a été consulté pour la première fois par {who} ({when}).{link}"
    if event.kind == OutboxKind.ACCESS:
        return "Consultation de votre dossier", f"Votre dossier a été consulté par {who} ({when}).{link}"
    if event.kind == OutboxKind.EMERGENCY_ACCESS:
        return (
            "Accès d'urgence à votre dossier",
            f"Un accès d'urgence à votre dossier a eu lieu {when}, par {who}. L'historique des accès en donne le détail.{link}",
        )
    if event.kind == OutboxKind.EMERGENCY_ACCESS_TO_ATTENDING:
        return (
            "Accès d'urgence au dossier d'un de vos patients",
            f"Un accès d'urgence a eu lieu {when}, par {who}, au dossier d'un patient dont vous êtes le médecin traitant.{link}",
        )
    raise ValueError(f"no text for notification kind {event.kind!r}")
