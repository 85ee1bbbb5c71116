"""Prescriptions (57833-6), and the drug lines a discharge letter or an emergency report prescribes too."""

from __future__ import annotations

import random
from datetime import date

from pipeline.samples.document import Section, d
from pipeline.samples.people import Author, Patient

# (drug, form, posology choices, durations)
_DRUGS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    # (drug, form, posologies, long-term treatment)
    (
        "Paracétamol 1 g",
        "comprimé",
        ("1 comprimé jusqu'à 3 fois par jour si douleur, en respectant 6 heures entre deux prises", "1 comprimé matin, midi et soir"),
        False,
    ),
    ("Amoxicilline 1 g", "comprimé", ("1 comprimé matin et soir", "1 comprimé 3 fois par jour"), False),
    ("Ramipril 5 mg", "gélule", ("1 gélule le matin",), True),
    ("Bisoprolol 2,5 mg", "comprimé", ("1 comprimé le matin",), True),
    ("Atorvastatine 20 mg", "comprimé", ("1 comprimé le soir",), True),
    ("Metformine 850 mg", "comprimé", ("1 comprimé matin et soir au milieu des repas",), True),
    ("Apixaban 5 mg", "comprimé", ("1 comprimé matin et soir",), True),
    ("Lévothyroxine 75 µg", "comprimé", ("1 comprimé le matin à jeun",), True),
    ("Furosémide 40 mg", "comprimé", ("1 comprimé le matin", "2 comprimés le matin"), True),
    ("Oméprazole 20 mg", "gélule", ("1 gélule le matin avant le repas",), True),
    ("Amlodipine 5 mg", "comprimé", ("1 comprimé le soir",), True),
    ("Tramadol 50 mg", "gélule", ("1 gélule jusqu'à 3 fois par jour si douleur intense",), False),
    ("Enoxaparine 4000 UI/0,4 mL", "seringue préremplie", ("1 injection sous-cutanée par jour",), False),
    ("Ibuprofène 400 mg", "comprimé", ("1 comprimé 3 fois par jour au cours des repas",), False),
    ("Prednisolone 20 mg", "comprimé orodispersible", ("2 comprimés le matin", "1 comprimé le matin"), False),
    ("Salbutamol 100 µg/dose", "suspension pour inhalation", ("2 bouffées en cas de gêne respiratoire",), True),
    ("Acide acétylsalicylique 75 mg", "sachet", ("1 sachet par jour au cours du repas de midi",), True),
    ("Macrogol 4000 10 g", "sachet", ("1 à 2 sachets par jour",), False),
    ("Spironolactone 25 mg", "comprimé", ("1 comprimé le matin",), True),
    ("Insuline glargine 100 UI/mL", "stylo prérempli", ("{u} unités le soir en sous-cutané",), True),
    ("Amoxicilline 500 mg/acide clavulanique 62,5 mg", "sachet", ("1 sachet matin, midi et soir",), False),
)
_LONG = ("1 mois", "3 mois", "3 mois, à renouveler")
_SHORT = ("3 jours", "5 jours", "7 jours", "10 jours", "14 jours")


_CHILD_DRUGS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("Paracétamol 2,4 % sans sucre", "suspension buvable", ("1 dose-poids toutes les 6 heures si fièvre ou douleur",), False),
    ("Amoxicilline 250 mg/5 mL", "poudre pour suspension buvable", ("50 mg/kg/jour en deux prises",), False),
    ("Ibuprofène 20 mg/mL", "suspension buvable", ("1 dose-poids toutes les 8 heures si fièvre mal tolérée",), False),
    ("Soluté de réhydratation orale", "poudre pour solution buvable", ("1 sachet dans 200 mL d'eau, à volonté",), False),
    ("Salbutamol 100 µg/dose", "suspension pour inhalation", ("2 bouffées avec chambre d'inhalation en cas de gêne",), True),
    ("Fluticasone 50 µg/dose", "suspension pour inhalation", ("2 bouffées matin et soir avec chambre d'inhalation",), True),
)


def _drug_line(rng: random.Random, long_term: bool, child: bool = False) -> str:
    name, form, posologies, _ = rng.choice([d for d in (_CHILD_DRUGS if child else _DRUGS) if d[3] == long_term])
    posology = rng.choice(posologies).format(u=rng.randint(8, 30))
    duration = rng.choice(_LONG if long_term else _SHORT)
    return f"{name}, {form} : {posology}, pendant {duration}."


def treatment(rng: random.Random, count: int, child: bool = False, long_share: float = 0.7) -> list[str]:
    """Distinct drug lines, a `long_share` of them long-term ones, suited to adults or children."""
    lines: list[str] = []
    for _ in range(count * 4):
        line = _drug_line(rng, rng.random() < long_share, child)
        if all(line.split(",")[0] != other.split(",")[0] for other in lines):
            lines.append(line)
        if len(lines) == count:
            break
    return lines


def prescription(rng: random.Random, p: Patient, a: Author, day: date, pages: int) -> tuple[list[str], list[list[Section]]]:
    child = p.age(day) < 16
    weight = rng.randint(12, 55) if child else rng.randint(45, 110)
    intro = [f"Fait le {d(day)}.", f"Poids : {weight} kg."]
    lines = treatment(rng, rng.randint(1, 5), child)
    first = [Section("Prescription", lines)]
    if rng.random() < 0.4:
        first.append(Section("Renouvellement", [f"À renouveler {rng.randint(1, 3)} fois."]))
    result = [first]
    if pages > 1:
        result.append(
            [
                Section(
                    "Prescriptions relatives au traitement de l'affection de longue durée",
                    treatment(rng, rng.randint(1, 3), child, long_share=1.0),
                ),
            ]
        )
    result[-1].append(Section("Prescripteur", [f"{a.label}, {a.specialty}. RPPS {a.rpps}."]))
    return intro, result
