"""Operative reports (34874-8): an intervention step by step, with its post-operative instructions."""

from __future__ import annotations

import random
from datetime import date, timedelta

from pipeline.samples.document import Section, d
from pipeline.samples.people import LAST, Author, Patient
from pipeline.samples.texts.common import sentences

# (intervention, anesthesia, steps)
_OPERATIONS = (
    (
        "Cholécystectomie par coelioscopie",
        "anesthésie générale",
        (
            "Installation en décubitus dorsal, open coelioscopie à l'ombilic et mise en place de trois trocarts.",
            "Vésicule inflammatoire. Dissection du triangle de Calot, contrôle du canal et de l'artère cystiques par clips.",
            "Cholécystectomie rétrograde, extraction en sac. Lavage et aspiration. Pas de drainage.",
        ),
    ),
    (
        "Appendicectomie par coelioscopie",
        "anesthésie générale",
        (
            "Open coelioscopie ombilicale, deux trocarts de 5 mm en fosse iliaque gauche et sus-pubien.",
            "Appendice phlegmoneux sans perforation. Section du méso-appendice à la pince bipolaire.",
            "Ligature de la base appendiculaire par deux endoloops, extraction en sac, lavage de la fosse iliaque droite.",
        ),
    ),
    (
        "Prothèse totale de hanche gauche",
        "rachianesthésie",
        (
            "Décubitus latéral droit, voie d'abord postéro-latérale.",
            "Luxation de la tête fémorale, ostéotomie du col, préparation du cotyle et mise en place d'une cupule sans ciment.",
            "Préparation fémorale, tige sans ciment et tête céramique. Réduction, tests de stabilité satisfaisants.",
        ),
    ),
    (
        "Cure de hernie inguinale droite selon Lichtenstein",
        "anesthésie locorégionale",
        (
            "Incision inguinale droite, ouverture de l'aponévrose du grand oblique.",
            "Hernie oblique externe, dissection et réintégration du sac.",
            "Mise en place d'une prothèse de polypropylène fixée par surjet de fil non résorbable.",
        ),
    ),
    (
        "Arthroscopie du genou droit avec méniscectomie partielle",
        "anesthésie générale",
        (
            "Garrot à la racine de la cuisse, voies d'abord antéro-latérale et antéro-médiale.",
            "Lésion en anse de seau de la corne postérieure du ménisque médial.",
            "Méniscectomie partielle économique, régularisation, lavage articulaire abondant.",
        ),
    ),
)
_POSTOP = (
    "Antalgiques selon le protocole du service.",
    "Prévention thromboembolique par enoxaparine pendant {n} jours.",
    "Ablation des fils ou agrafes à J{n} par l'infirmière.",
    "Reprise de l'alimentation le soir même si tolérée.",
    "Appui complet autorisé d'emblée avec deux cannes anglaises.",
    "Consultation post-opératoire avec le chirurgien dans {n} semaines.",
)


def operative(rng: random.Random, p: Patient, a: Author, day: date, pages: int) -> tuple[list[str], list[list[Section]]]:
    name, anesthesia, steps = rng.choice(_OPERATIONS)
    consulted = d(day - timedelta(days=rng.randint(10, 90)))
    intro = [
        f"Date de l'intervention : {d(day)}. Opérateur : {a.label}. Aide : Dr {rng.choice(LAST).upper()}.",
        f"Anesthésiste : Dr {rng.choice(LAST).upper()}. Type d'anesthésie : {anesthesia}.",
    ]
    first = [
        Section("Intervention", [name + "."]),
        Section(
            "Indication",
            [
                f"{p.pt} présente une pathologie relevant d'une indication chirurgicale posée en consultation le {consulted}.",
            ],
        ),
        Section("Déroulement", list(steps)),
        Section("Fermeture", ["Fermeture plan par plan, surjet intradermique au fil résorbable. Pansement sec."]),
        Section("Consignes post-opératoires", sentences(rng, _POSTOP, rng.randint(2, 4))),
    ]
    result = [first]
    for _ in range(pages - 1):
        result.append(
            [
                Section(
                    "Check-list sécurité du patient au bloc opératoire",
                    [
                        "Identité du patient vérifiée, site opératoire marqué, antibioprophylaxie réalisée avant l'incision.",
                        f"Durée opératoire : {rng.randint(35, 150)} minutes. Pertes sanguines estimées : {rng.randint(1, 40) * 10} mL.",
                    ],
                ),
                Section("Comptes", ["Compte des compresses et des instruments vérifié et conforme en fin d'intervention."]),
            ]
        )
    result[-1].append(Section("Signature", [f"{a.label}, chirurgien. RPPS {a.rpps}."]))
    return intro, result
