"""Administrative notes: good PDFs with no medical document vocabulary, so no type can be told (95 / unknown)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from pipeline.samples.document import Doc, Section, d
from pipeline.samples.people import CITIES, STREETS, Author, Facility, Patient
from pipeline.samples.vocabulary import NEUTRAL_TITLE, UNKNOWN_TYPE

# Administrative notes: (title, paragraphs); no medical document vocabulary, so no type can be told.
_ADMINISTRATIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Changement d'adresse du secrétariat",
        (
            "Madame, Monsieur,",
            "Nous vous informons qu'à compter du {later}, le secrétariat de l'établissement est transféré au {address}.",
            "Les numéros de téléphone et les horaires d'ouverture restent inchangés : du lundi au vendredi, de 8h30 à 12h "
            "et de 13h30 à 17h30.",
            "Merci de mettre à jour vos coordonnées et d'adresser désormais votre correspondance à cette nouvelle adresse.",
            "Nous vous prions d'agréer, Madame, Monsieur, nos salutations distinguées.",
        ),
    ),
    (
        "Page blanche",
        (
            "Page numérisée le {day} par le service des archives.",
            "Cette page ne comporte aucune information lisible. Elle est conservée avec les autres pages de la même série "
            "pour que la série reste complète.",
            "Nombre de pages de la série : {count}.",
        ),
    ),
    (
        "Report de rendez-vous",
        (
            "Madame, Monsieur,",
            "Votre rendez-vous prévu le {day} est reporté au {later} à {hour}h{minute:02d}, en raison d'une fermeture "
            "exceptionnelle de nos locaux.",
            "Merci de vous présenter à l'accueil quinze minutes avant l'heure prévue, muni de votre carte Vitale et "
            "d'une pièce d'identité.",
            "En cas d'empêchement, merci de prévenir le secrétariat par téléphone.",
        ),
    ),
    (
        "Change of address",
        (
            "Dear Sir or Madam,",
            "Please note that from {later} our administrative office moves to {address}.",
            "Telephone numbers and opening hours remain unchanged: Monday to Friday, 8.30 am to 5.30 pm.",
            "Kind regards, the administrative office.",
        ),
    ),
)


def administrative(rng: random.Random, p: Patient, a: Author, f: Facility, day: date, moment: datetime) -> Doc:
    """A good PDF that is no medical document: expected 95 / unknown."""
    title, paragraphs = rng.choice(_ADMINISTRATIVE)
    city = rng.choice(list(CITIES))
    values = {
        "day": d(day),
        "later": d(day + timedelta(days=rng.randint(7, 60))),
        "address": f"{rng.randint(1, 120)} {rng.choice(STREETS)}, {CITIES[city]} {city}",
        "count": rng.randint(2, 12),
        "hour": rng.randint(8, 17),
        "minute": rng.choice((0, 15, 30, 45)),
    }
    body = [Section(title, [paragraph.format(**values) for paragraph in paragraphs])]
    return Doc(UNKNOWN_TYPE, NEUTRAL_TITLE, p, a, f, day, moment, [f"Le {d(day)}."], [body], heading=False)
