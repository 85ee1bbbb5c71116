"""What several kinds of text share: vital signs, a past history, sentences drawn from a pool."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date

from pipeline.samples.document import fr
from pipeline.samples.people import Patient


def vitals(rng: random.Random) -> str:
    return (
        f"Pression artérielle {rng.randint(100, 165)}/{rng.randint(55, 95)} mmHg, fréquence cardiaque "
        f"{rng.randint(55, 118)} battements par minute, saturation en oxygène {rng.randint(89, 100)} % en air "
        f"ambiant, température {fr(rng.uniform(36.2, 39.4), 1)} °C."
    )


# Past history; "F:"/"M:" entries only for women/men, "C:" entries for children only.
_HISTORY = (
    "Hypertension artérielle traitée depuis {n} ans.",
    "Diabète de type 2 sous antidiabétiques oraux.",
    "Dyslipidémie sous statine.",
    "Tabagisme sevré depuis {n} ans, estimé à 30 paquets-années.",
    "Appendicectomie en {y}.",
    "Cholécystectomie en {y}.",
    "Fibrillation atriale paroxystique sous anticoagulant oral.",
    "Hypothyroïdie substituée.",
    "Syndrome d'apnées obstructives du sommeil appareillé.",
    "Prothèse totale de hanche droite en {y}.",
    "F:Cancer du sein traité en {y}, en rémission complète.",
    "F:Deux accouchements par voie basse.",
    "M:Hypertrophie bénigne de la prostate.",
    "Asthme dans l'enfance, sans traitement de fond actuel.",
    "Insuffisance rénale chronique modérée.",
    "Allergie à la pénicilline (urticaire).",
    "C:Asthme du nourrisson.",
    "C:Vaccinations à jour selon le calendrier vaccinal.",
    "C:Otites moyennes aiguës à répétition.",
)


def history(rng: random.Random, p: Patient, day: date, k: int) -> str:
    """A plausible past history for this patient's sex and age."""
    child = p.age(day) < 18
    pool = []
    for entry in _HISTORY:
        tag, text = (entry[0], entry[2:]) if entry[1:2] == ":" else ("", entry)
        if (tag == "C") == child and tag != {1: "F", 2: "M"}[p.sex]:
            pool.append(text)
    if rng.random() < 0.12:
        return "Pas d'antécédent médical ou chirurgical notable."
    first = p.birth.year + (1 if child else 18)
    picks = rng.sample(pool, min(k, len(pool)))
    return " ".join(t.format(n=rng.randint(2, 12), y=rng.randint(min(first, day.year - 1), day.year - 1)) for t in picks)


def sentences(rng: random.Random, pool: Sequence[str], k: int, **values: object) -> list[str]:
    picks = rng.sample(list(pool), min(k, len(pool)))
    return [p.format(n=rng.randint(2, 12), y=rng.randint(1985, 2022), **values) for p in picks]
