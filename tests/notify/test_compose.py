"""The words of the notifications added with documents over time (pipeline/notify/compose.py)."""

from __future__ import annotations

import datetime as dt

from pipeline.index.states import OutboxKind
from pipeline.notify.compose import Event, compose

AT = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)


def test_a_withdrawal_says_who_and_when_and_points_to_the_record() -> None:
    subject, body = compose(Event(OutboxKind.DOCUMENT_WITHDRAWN, AT, ("hospital:CHU-NICE",)), "https://dmp.example/")
    assert subject == "Un document a été retiré de votre dossier"
    assert "CHU-NICE" in body and "le 27/11/2026 à 10:30" in body and body.endswith("https://dmp.example/")


def test_a_document_the_patient_added_is_told_as_their_own() -> None:
    _, body = compose(Event(OutboxKind.DOCUMENTS_ADDED, AT, ("patient:4f0c",)), "https://dmp.example/")
    assert "par vous-même" in body and "4f0c" not in body
