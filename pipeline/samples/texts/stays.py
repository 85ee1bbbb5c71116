"""Discharge letters (11490-0): a hospital stay by service, from the reason for admission to the follow-up."""

from __future__ import annotations

import random
from datetime import date, timedelta

from pipeline.samples.document import Section, d
from pipeline.samples.people import Author, Patient
from pipeline.samples.texts.common import history, sentences, vitals
from pipeline.samples.texts.labs import lab_table
from pipeline.samples.texts.prescriptions import treatment

# service -> (reason for admission, final diagnosis, how the stay went)
_STAYS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Cardiologie": (
        (
            "dyspnée d'effort d'aggravation progressive et oedèmes des membres inférieurs",
            "insuffisance cardiaque à fraction d'éjection altérée, décompensée sur écart de régime sodé",
            "Le traitement diurétique a été adapté à la fonction rénale, avec une perte de {n} kg et la disparition des oedèmes.",
        ),
        (
            "douleur thoracique constrictive au repos",
            "syndrome coronarien aigu sans sus-décalage du segment ST",
            "La coronarographie a montré une sténose serrée de l'interventriculaire antérieure, "
            "traitée par angioplastie avec pose d'un stent actif.",
        ),
        (
            "palpitations mal tolérées",
            "fibrillation atriale rapide de découverte récente",
            "Le rythme a été ralenti par bêtabloquant puis une anticoagulation orale a été introduite.",
        ),
    ),
    "Pneumologie": (
        (
            "dyspnée fébrile et toux productive",
            "pneumopathie franche lobaire aiguë du lobe inférieur droit",
            "L'antibiothérapie probabiliste a permis une apyrexie en {n} jours, avec une nette régression du syndrome inflammatoire.",
        ),
        (
            "majoration de la dyspnée et des expectorations",
            "exacerbation de bronchopneumopathie chronique obstructive",
            "Une corticothérapie courte et des aérosols de bronchodilatateurs ont été administrés, "
            "avec un sevrage de l'oxygène en {n} jours.",
        ),
    ),
    "Médecine interne": (
        (
            "altération de l'état général avec asthénie et amaigrissement",
            "anémie ferriprive sur carence d'apport",
            "Une supplémentation martiale intraveineuse a été réalisée ; la fibroscopie et la coloscopie n'ont pas retrouvé de lésion.",
        ),
        (
            "fièvre prolongée inexpliquée",
            "pyélonéphrite aiguë à Escherichia coli",
            "L'antibiothérapie a été adaptée à l'antibiogramme, avec une apyrexie obtenue en {n} jours.",
        ),
    ),
    "Gériatrie": (
        (
            "chutes à répétition au domicile",
            "chutes multifactorielles avec hypotension orthostatique",
            "Le traitement antihypertenseur a été allégé et une rééducation à la marche a été entreprise.",
        ),
        (
            "confusion aiguë",
            "syndrome confusionnel sur rétention aiguë d'urine",
            "La pose d'une sonde urinaire a permis une amélioration rapide de la vigilance et de l'orientation.",
        ),
    ),
    "Neurologie": (
        (
            "déficit moteur brachio-facial gauche d'installation brutale",
            "accident vasculaire cérébral ischémique sylvien droit",
            "Une thrombolyse intraveineuse a été réalisée dans les délais, avec une récupération partielle du déficit.",
        ),
        (
            "céphalées inhabituelles",
            "migraine avec aura sans argument pour une cause secondaire",
            "L'IRM cérébrale et la ponction lombaire sont normales ; les céphalées ont cédé sous traitement de crise.",
        ),
    ),
    "Gastro-entérologie": (
        (
            "douleurs de l'hypochondre droit fébriles",
            "angiocholite lithiasique",
            "Une sphinctérotomie endoscopique avec extraction du calcul a été réalisée le lendemain de l'admission.",
        ),
        (
            "méléna",
            "ulcère bulbaire hémorragique",
            "La fibroscopie a permis une hémostase endoscopique ; {n} culots globulaires ont été transfusés.",
        ),
    ),
    "Endocrinologie": (
        (
            "déséquilibre glycémique persistant",
            "diabète de type 2 déséquilibré, passage à l'insulinothérapie",
            "Une insuline basale a été introduite avec une éducation thérapeutique à l'autosurveillance glycémique.",
        ),
    ),
    "Pédiatrie": (
        (
            "gêne respiratoire avec sifflements",
            "crise d'asthme modérée",
            "Les nébulisations de salbutamol et une corticothérapie orale courte ont permis une amélioration en {n} jours.",
        ),
        (
            "vomissements et diarrhée avec perte de poids",
            "gastro-entérite aiguë avec déshydratation modérée",
            "La réhydratation par soluté de réhydratation orale puis par voie intraveineuse a permis une reprise de poids.",
        ),
    ),
    "Néphrologie": (
        (
            "élévation de la créatininémie",
            "insuffisance rénale aiguë fonctionnelle sur déshydratation",
            "La réhydratation intraveineuse a permis un retour de la créatininémie à sa valeur de base en {n} jours.",
        ),
    ),
}


_EVOLUTION = (
    "La tolérance du traitement a été bonne, sans effet indésirable notable.",
    "{pt} a bénéficié de séances quotidiennes de kinésithérapie.",
    "Une consultation diététique a été réalisée pendant le séjour.",
    "Aucune complication n'a été observée pendant l'hospitalisation.",
    "Le retour à domicile a été organisé avec le service social et l'infirmière libérale.",
    "La douleur a été contrôlée par des antalgiques de palier 1 puis de palier 2.",
    "Le bilan biologique de contrôle est satisfaisant.",
    "Le traitement habituel a été poursuivi pendant le séjour.",
)
_FOLLOW_UP = (
    "Consultation de contrôle avec le médecin du service dans {n} semaines.",
    "Bilan biologique à réaliser dans 8 jours : NFS, ionogramme sanguin, créatininémie.",
    "Reprise du traitement habituel, sans modification en dehors des changements mentionnés.",
    "Surveillance du poids deux fois par semaine ; consulter en cas de prise de plus de 2 kg.",
    "Infirmière à domicile pour surveillance clinique et prise de sang hebdomadaire.",
    "Échographie de contrôle à prévoir dans {n} mois.",
)


def discharge(rng: random.Random, p: Patient, a: Author, day: date, pages: int) -> tuple[list[str], list[list[Section]]]:
    age = p.age(day)
    if age < 16:
        service = "Pédiatrie"
    elif a.specialty in _STAYS and (a.specialty != "Gériatrie" or age >= 70):
        service = a.specialty
    else:
        service = rng.choice([s for s in _STAYS if s not in ("Pédiatrie", "Gériatrie") or (s == "Gériatrie" and age >= 70)])
    reason, diagnosis, course = rng.choice(_STAYS[service])
    admitted = day - timedelta(days=rng.randint(2, 14))
    intro = [
        f"Service de {service}. Hospitalisation du {d(admitted)} au {d(day)}.",
        f"Cher confrère, {p.label}, né{p.e} le {d(p.birth)}, a été hospitalisé{p.e} dans notre service.",
    ]
    first = [
        Section("Motif d'hospitalisation", [f"{p.pt} est adressé{p.e} pour {reason}."]),
        Section("Antécédents", [history(rng, p, day, rng.randint(2, 4))]),
        Section("Examen clinique à l'entrée", [vitals(rng)]),
        Section("Évolution", [" ".join([course.format(n=rng.randint(2, 6)), *sentences(rng, _EVOLUTION, rng.randint(1, 3), pt=p.pt)])]),
        Section("Diagnostic de sortie", [diagnosis[0].upper() + diagnosis[1:] + "."]),
        Section("Traitement de sortie", treatment(rng, rng.randint(2, 5), child=age < 16)),
        Section("Suites à prévoir", sentences(rng, _FOLLOW_UP, rng.randint(1, 3))),
    ]
    result = [first]
    for _ in range(pages - 1):
        result.append(
            [
                Section("Examens complémentaires", [f"Biologie du {d(day - timedelta(days=1))} :"], lab_table(rng, 6)),
                Section("Compléments d'évolution", [" ".join(sentences(rng, _EVOLUTION, 3, pt=p.pt))]),
            ]
        )
    result[-1].append(Section("Signature", [f"{a.label}, service de {service}. RPPS {a.rpps}. Copie au médecin traitant."]))
    return intro, result
