"""Laboratory reports (11502-2), and the result tables a discharge letter or an emergency report quotes."""

from __future__ import annotations

import random
from datetime import date

from pipeline.samples.document import Section, Table, d, fr
from pipeline.samples.people import FEMALE, LAST, MALE, Author, Patient
from pipeline.samples.texts.common import sentences

# (analyte, unit, low, high, decimals)
_PANELS: dict[str, tuple[tuple[str, str, float, float, int], ...]] = {
    "Hématologie": (
        ("Hémoglobine", "g/dL", 12.0, 17.0, 1),
        ("Hématocrite", "%", 37.0, 50.0, 1),
        ("Leucocytes", "G/L", 4.0, 10.0, 2),
        ("Polynucléaires neutrophiles", "G/L", 1.8, 7.5, 2),
        ("Lymphocytes", "G/L", 1.0, 4.0, 2),
        ("Plaquettes", "G/L", 150, 400, 0),
        ("VGM", "fL", 80, 100, 0),
    ),
    "Biochimie": (
        ("Sodium", "mmol/L", 136, 145, 0),
        ("Potassium", "mmol/L", 3.5, 5.1, 1),
        ("Chlore", "mmol/L", 98, 107, 0),
        ("Créatinine", "µmol/L", 59, 104, 0),
        ("Urée", "mmol/L", 2.8, 7.2, 1),
        ("Glucose à jeun", "mmol/L", 4.1, 5.9, 2),
        ("Protéine C réactive", "mg/L", 0.0, 5.0, 1),
        ("Albumine", "g/L", 35, 52, 0),
    ),
    "Bilan hépatique": (
        ("ASAT", "UI/L", 5, 35, 0),
        ("ALAT", "UI/L", 5, 45, 0),
        ("Gamma-GT", "UI/L", 8, 55, 0),
        ("Phosphatases alcalines", "UI/L", 40, 130, 0),
        ("Bilirubine totale", "µmol/L", 3, 21, 0),
    ),
    "Bilan lipidique": (
        ("Cholestérol total", "g/L", 1.5, 2.0, 2),
        ("HDL-cholestérol", "g/L", 0.4, 0.8, 2),
        ("LDL-cholestérol calculé", "g/L", 0.7, 1.6, 2),
        ("Triglycérides", "g/L", 0.5, 1.5, 2),
    ),
    "Hormonologie": (
        ("TSH", "mUI/L", 0.27, 4.2, 2),
        ("T4 libre", "pmol/L", 12.0, 22.0, 1),
        ("Hémoglobine glyquée (HbA1c)", "%", 4.0, 6.0, 1),
    ),
    "Hémostase": (
        ("Taux de prothrombine", "%", 70, 100, 0),
        ("INR", "", 0.8, 1.2, 2),
        ("Fibrinogène", "g/L", 2.0, 4.0, 1),
    ),
}


def lab_table(rng: random.Random, k: int, panel: str | None = None) -> Table:
    analytes = _PANELS[panel] if panel else tuple(a for rows in _PANELS.values() for a in rows)
    rows: list[tuple[str, ...]] = []
    for name, unit, low, high, dec in rng.sample(list(analytes), min(k, len(analytes))):
        span = high - low
        value = rng.uniform(low - 0.3 * span, high + 0.3 * span) if rng.random() < 0.25 else rng.uniform(low, high)
        value = max(value, 0.0)
        flag = " H" if value > high else (" B" if value < low else "")
        previous = fr(rng.uniform(low, high), dec) if rng.random() < 0.5 else "-"
        rows.append((name, fr(value, dec) + flag, unit, f"{fr(low, dec)} - {fr(high, dec)}", previous))
    return Table(("Analyse", "Résultat", "Unité", "Valeurs de référence", "Antériorité"), (62, 26, 22, 40, 30), rows)


_LAB_COMMENTS = (
    "Résultats contrôlés sur un second prélèvement.",
    "Les valeurs marquées H sont supérieures et les valeurs marquées B inférieures aux valeurs de référence.",
    "Hémolyse légère du prélèvement : interpréter le potassium avec prudence.",
    "Prélèvement réalisé à jeun.",
    "Résultats à interpréter en fonction du contexte clinique.",
    "Débit de filtration glomérulaire estimé (CKD-EPI) : {n}0 mL/min/1,73 m2.",
)


def lab(rng: random.Random, p: Patient, a: Author, day: date, pages: int) -> tuple[list[str], list[list[Section]]]:
    intro = [
        f"Prélèvement du {d(day)} à {rng.randint(7, 11)}h{rng.randint(0, 59):02d}. Dossier n° {rng.randint(100000, 999999)}.",
        f"Prescripteur : Dr {rng.choice(MALE + FEMALE)} {rng.choice(LAST).upper()}.",
    ]
    panels = rng.sample(list(_PANELS), min(len(_PANELS), pages + rng.randint(0, 1)))
    result: list[list[Section]] = [[] for _ in range(pages)]
    for i, panel in enumerate(panels):
        result[i % pages].append(Section(panel, [], lab_table(rng, rng.randint(3, 7), panel)))
    result[-1].append(Section("Commentaire du biologiste", sentences(rng, _LAB_COMMENTS, rng.randint(1, 2))))
    result[-1].append(Section("Validation", [f"Compte rendu validé par {a.label}, biologiste médical. RPPS {a.rpps}."]))
    return intro, result
