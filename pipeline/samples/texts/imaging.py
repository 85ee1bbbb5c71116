"""Imaging reports (18748-4): an examination, normal or not, with its technique and conclusion."""

from __future__ import annotations

import random
from datetime import date, timedelta

from pipeline.samples.document import Section, d
from pipeline.samples.people import LAST, Author, Patient

# (exam, indication, technique, normal findings, abnormal findings, conclusion if abnormal)
_EXAMS = (
    (
        "Radiographie thoracique de face",
        "toux fébrile depuis cinq jours",
        "Cliché de face en position debout, en inspiration.",
        "Pas d'opacité parenchymateuse systématisée. Culs-de-sac pleuraux libres. Silhouette cardiaque de taille normale.",
        "Opacité alvéolaire du lobe inférieur droit avec bronchogramme aérique. Discret émoussement du cul-de-sac droit.",
        "Aspect compatible avec une pneumopathie lobaire inférieure droite.",
    ),
    (
        "Scanner thoraco-abdomino-pelvien avec injection",
        "bilan d'extension d'une altération de l'état général",
        "Acquisition hélicoïdale après injection intraveineuse de produit de contraste iodé, reconstructions multiplanaires.",
        "Pas d'adénomégalie médiastinale ni abdominale. Foie, rate, pancréas et reins sans anomalie. Pas d'épanchement.",
        "Nodule pulmonaire spiculé de 14 mm du lobe supérieur gauche. Pas d'adénomégalie. Foie sans lésion focale.",
        "Nodule pulmonaire suspect du lobe supérieur gauche : avis en réunion de concertation pluridisciplinaire.",
    ),
    (
        "IRM du genou droit",
        "douleur et blocages après un traumatisme en torsion",
        "Séquences pondérées T1 et densité de protons avec saturation de la graisse dans les trois plans.",
        "Ménisques et ligaments croisés d'aspect normal. Cartilage fémoro-tibial préservé. Pas d'épanchement.",
        "Fissure horizontale de la corne postérieure du ménisque médial atteignant la surface articulaire. Épanchement modéré.",
        "Lésion méniscale médiale postérieure. Ligaments croisés intacts.",
    ),
    (
        "Échographie abdominale",
        "douleurs de l'hypochondre droit",
        "Examen réalisé à jeun, sonde convexe.",
        "Foie de taille normale, d'échostructure homogène. Vésicule alithiasique à paroi fine. Voies biliaires non dilatées.",
        "Vésicule biliaire lithiasique avec paroi épaissie à 5 mm et signe de Murphy échographique positif.",
        "Aspect de cholécystite aiguë lithiasique.",
    ),
    (
        "Scanner cérébral sans injection",
        "céphalées brutales",
        "Acquisition volumique sans injection de produit de contraste.",
        "Pas d'hémorragie intra- ou extra-axiale. Pas d'effet de masse. Système ventriculaire de taille normale.",
        "Hypodensité cortico-sous-corticale frontale droite sans effet de masse, d'allure ischémique récente.",
        "Lésion ischémique récente frontale droite ; compléter par une IRM.",
    ),
    (
        "IRM du rachis lombaire",
        "lombosciatique gauche rebelle",
        "Séquences sagittales T1, T2 et STIR, axiales T2.",
        "Disques de signal et de hauteur conservés. Canal rachidien de dimensions normales. Pas de conflit radiculaire.",
        "Hernie discale L4-L5 postéro-latérale gauche au contact de la racine L5 gauche. Discopathie dégénérative L5-S1.",
        "Hernie discale L4-L5 gauche en conflit avec la racine L5.",
    ),
)


def imaging(rng: random.Random, p: Patient, a: Author, day: date, pages: int) -> tuple[list[str], list[list[Section]]]:
    exam, indication, technique, normal, abnormal, abnormal_conclusion = rng.choice(_EXAMS)
    is_normal = rng.random() < 0.45
    intro = [f"Examen : {exam}, réalisé le {d(day)}.", f"Médecin demandeur : Dr {rng.choice(LAST).upper()}."]
    first = [
        Section("Indication", [f"{p.pt} consulte pour {indication}."]),
        Section("Technique", [technique, f"Examen n° {rng.randint(10000, 99999)}, images archivées sur le PACS de l'établissement."]),
        Section("Résultats", [normal if is_normal else abnormal]),
        Section("Conclusion", ["Examen sans anomalie significative." if is_normal else abnormal_conclusion]),
    ]
    result = [first]
    for i in range(pages - 1):
        result.append(
            [
                Section(
                    f"Annexe {i + 1} : comparaison",
                    [
                        f"Comparaison avec l'examen du {d(day - timedelta(days=rng.randint(60, 900)))}.",
                        "Les anomalies décrites n'étaient pas visibles sur l'examen antérieur."
                        if not is_normal
                        else "Aspect superposable à l'examen antérieur.",
                    ],
                ),
                Section("Description détaillée", [normal, technique]),
            ]
        )
    result[-1].append(Section("Signature", [f"{a.label}, radiologue. RPPS {a.rpps}."]))
    return intro, result
