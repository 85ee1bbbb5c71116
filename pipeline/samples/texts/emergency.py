"""Emergency department reports (15507-7): a visit from the arrival to the orientation."""

from __future__ import annotations

import random
from datetime import date

from pipeline.samples.document import Section, d
from pipeline.samples.people import Author, Patient
from pipeline.samples.texts.common import history, vitals
from pipeline.samples.texts.labs import lab_table
from pipeline.samples.texts.prescriptions import treatment

# (reason for visit, examination, diagnosis, outcome)
_EMERGENCIES = (
    (
        "douleur de la cheville droite après une chute",
        "Oedème latéral, appui possible, pas de douleur osseuse selon Ottawa.",
        "Entorse bénigne de la cheville droite.",
        "Retour à domicile avec attelle, glace et antalgiques.",
    ),
    (
        "douleur thoracique",
        "Auscultation normale, ECG sans trouble de la repolarisation, troponine négative à deux reprises.",
        "Douleur thoracique pariétale.",
        "Retour à domicile, consultation avec le médecin traitant.",
    ),
    (
        "dyspnée fébrile",
        "Crépitants de la base droite, saturation à 92 % en air ambiant.",
        "Pneumopathie communautaire.",
        "Hospitalisation en médecine polyvalente.",
    ),
    (
        "plaie de la main gauche par couteau",
        "Plaie de 3 cm de la face palmaire, mobilité et sensibilité des doigts conservées.",
        "Plaie simple sans atteinte tendineuse.",
        "Suture par 4 points, retour à domicile, vaccination antitétanique vérifiée.",
    ),
    (
        "douleur abdominale de la fosse iliaque droite",
        "Défense en fosse iliaque droite, CRP à 68 mg/L.",
        "Appendicite aiguë.",
        "Avis chirurgical et hospitalisation en chirurgie viscérale.",
    ),
    (
        "malaise avec perte de connaissance brève",
        "Examen neurologique normal, ECG en rythme sinusal, glycémie normale.",
        "Malaise vagal.",
        "Retour à domicile avec conseils.",
    ),
)


def emergency(rng: random.Random, p: Patient, a: Author, day: date, pages: int) -> tuple[list[str], list[list[Section]]]:
    reason, exam, diagnosis, outcome = rng.choice(_EMERGENCIES)
    hour = rng.randint(0, 23)
    arrival = rng.choice(("moyens personnels", "pompiers", "ambulance privée", "SMUR"))
    intro = [f"Arrivée aux urgences le {d(day)} à {hour}h{rng.randint(0, 59):02d}. Mode d'arrivée : {arrival}."]
    first = [
        Section("Motif de recours", [f"{p.pt} consulte pour {reason}."]),
        Section("Antécédents", [history(rng, p, day, rng.randint(1, 3))]),
        Section("Constantes à l'arrivée", [vitals(rng)]),
        Section("Examen clinique", [exam]),
        Section("Diagnostic", [diagnosis]),
        Section("Orientation", [outcome]),
        Section("Traitement", treatment(rng, rng.randint(1, 2), p.age(day) < 16, long_share=0.0)),
    ]
    result = [first]
    for _ in range(pages - 1):
        result.append(
            [
                Section("Résultats biologiques", [], lab_table(rng, 5, rng.choice(("Biochimie", "Hématologie", "Hémostase")))),
                Section(
                    "Transmissions infirmières",
                    [
                        f"Surveillance horaire des constantes, stables. Évaluation de la douleur : EVA {rng.randint(1, 8)}/10.",
                    ],
                ),
            ]
        )
    result[-1].append(Section("Signature", [f"{a.label}, médecin urgentiste. RPPS {a.rpps}."]))
    return intro, result
