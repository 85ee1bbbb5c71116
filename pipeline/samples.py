"""Synthetic sample batches: realistic French medical documents plus a manifest.

`generate_samples(out)` writes a flat folder the intake can read as one hospital batch:

- the documents: PDFs (most), CDA R2 XML documents (about 5 %), and, when `bad` is true,
  about 5 % of faulty files, each kind at least once from 20 documents on;
- `manifest.csv`: one row per listed document (see `MANIFEST_COLUMNS`);
- `expected.csv`: the outcome the pipeline should reach for every file, listed or not
  (see `EXPECTED_COLUMNS`), with the expected class and type codes for good documents.

How the good PDFs tell their type (the classification order: own code, manifest, content):

- most carry a LOINC code in the manifest's `document_type`, some a common name (French or English);
- "empty": no `document_type`, the manifest title names the type;
- "untitled": no `document_type` and a neutral title (`NEUTRAL_TITLE`); the extracted text tells the
  type, with the document's heading for half of them and from its body alone for the other half;
- "filename": no `document_type`, a neutral title and a scan without a text layer; only the file
  name (`doc-000123-compte-rendu-operatoire.pdf`) tells the type;
- "administrative" (about 2 %, at least one from 20 documents on): no `document_type`, a neutral
  title and a text without medical document vocabulary (a change of address, a blank scanned page
  notice...): expected 95 / unknown.

Everything is synthetic (names, identifiers, facilities) and deterministic: the same
(patients, documents, seed, bad) always gives the same bytes. Dates are relative to the fixed
`REFERENCE_DATE`, never to today.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import struct
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape as _xml_escape

from fpdf import FPDF
from fpdf.fonts import CORE_FONTS_CHARWIDTHS

from pipeline.identity import INS_OID_NIR, nir_key, with_key
from pipeline.ingest.manifest import MANIFEST_COLUMNS

REFERENCE_DATE = date(2026, 1, 15)
"""Every service date lies in the three years up to this day (inclusive), never after it."""

EXPECTED_COLUMNS: tuple[str, ...] = (
    "file",
    "expected_state",
    "expected_reason",
    "class_code",
    "type_code",
)

LOINC_OID = "2.16.840.1.113883.6.1"
UNKNOWN_CLASS = "95"
UNKNOWN_TYPE = "unknown"

# Faulty file kinds, in the order they are first handed out, with their expected reason.
BAD_KINDS: dict[str, str] = {
    "truncated_pdf": "pdf_corrupt",
    "png_as_pdf": "type_mismatch",
    "wrong_ins_key": "invalid_ins",
    "empty_pdf": "empty_file",
    "missing": "missing_file",
}
UNLISTED_REASON = "unlisted_file"
# Kinds that may be handed out more than once (one missing file per batch is enough).
_REPEATABLE_BAD = ("truncated_pdf", "png_as_pdf", "wrong_ins_key", "empty_pdf")


@dataclass(frozen=True)
class SampleSummary:
    """What `generate_samples` wrote.

    `documents` is the number of manifest rows (the `documents` argument); `good` and `bad` count
    the rows of expected.csv whose expected state is `indexed` and `rejected`. The rejected rows
    include the missing file (listed, not written) and the unlisted file (written, not listed),
    so `good + bad == documents + 1` when bad samples are on and `documents >= 20`, else
    `good + bad == documents`. `patients` counts the patients with at least one manifest row
    (the `patients` argument unless there are fewer documents than patients).
    """

    out: Path
    documents: int
    good: int
    bad: int
    patients: int


@dataclass(frozen=True)
class DocType:
    """A document type the generator writes, with its expected class code."""

    code: str
    class_code: str
    title: str
    display_name: str
    profession: str
    weight: int


DOC_TYPES: dict[str, DocType] = {
    t.code: t
    for t in (
        DocType("11490-0", "10", "Lettre de liaison de sortie", "Lettre de liaison", "physician", 25),
        DocType("11502-2", "10", "Compte rendu de biologie", "CR d'examens biologiques", "lab_biologist", 30),
        DocType("18748-4", "10", "Compte rendu d'imagerie", "CR d'imagerie médicale", "physician", 15),
        DocType("57833-6", "42", "Ordonnance de médicaments", "Prescription de médicaments", "physician", 14),
        DocType("34874-8", "10", "Compte rendu opératoire", "CR opératoire", "physician", 6),
        DocType("15507-7", "10", "Compte rendu de passage aux urgences", "CR de passage aux urgences", "physician", 10),
    )
}

# Common names some senders put in document_type instead of a code, and the code they mean.
COMMON_TYPE_NAMES: dict[str, str] = {
    "lettre de liaison": "11490-0",
    "discharge summary": "11490-0",
    "compte rendu de biologie": "11502-2",
    "Lab report": "11502-2",
    "Radiology report": "18748-4",
    "prescription": "57833-6",
    "Ordonnance": "57833-6",
    "Compte-rendu opératoire": "34874-8",
    "Emergency department report": "15507-7",
}


# ---------------------------------------------------------------------------------------------
# Synthetic people and places
# ---------------------------------------------------------------------------------------------

_MALE = (
    "Jean",
    "Pierre",
    "Michel",
    "André",
    "Philippe",
    "Alain",
    "Bernard",
    "Jacques",
    "Louis",
    "Nicolas",
    "Thomas",
    "Julien",
    "Antoine",
    "Mathieu",
    "Hugo",
    "Lucas",
    "Gabriel",
    "Paul",
    "Yves",
    "François",
    "Christophe",
    "Laurent",
    "Olivier",
    "Sébastien",
    "Rémi",
    "Noël",
)
_FEMALE = (
    "Marie",
    "Jeanne",
    "Françoise",
    "Monique",
    "Catherine",
    "Nathalie",
    "Isabelle",
    "Sylvie",
    "Anne",
    "Christine",
    "Sophie",
    "Camille",
    "Julie",
    "Léa",
    "Chloé",
    "Emma",
    "Manon",
    "Inès",
    "Élodie",
    "Hélène",
    "Céline",
    "Aurélie",
    "Mathilde",
    "Agnès",
    "Margaux",
    "Zoé",
)
_LAST = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Le Gall",
    "Le Goff",
    "Kerbrat",
    "Santoni",
    "Casanova",
    "Albertini",
    "Paoli",
    "Castellani",
)
_CITIES: dict[str, str] = {
    "Rennes": "35000",
    "Nantes": "44000",
    "Lyon": "69003",
    "Lille": "59000",
    "Bordeaux": "33000",
    "Toulouse": "31000",
    "Marseille": "13005",
    "Strasbourg": "67000",
    "Montpellier": "34000",
    "Grenoble": "38000",
    "Tours": "37000",
    "Dijon": "21000",
    "Brest": "29200",
    "Vannes": "56000",
    "Ajaccio": "20000",
    "Bastia": "20200",
    "Limoges": "87000",
    "Poitiers": "86000",
    "Reims": "51100",
    "Clermont-Ferrand": "63000",
    "Besançon": "25000",
    "Angers": "49000",
    "Caen": "14000",
    "Rouen": "76000",
}
_STREETS = (
    "rue de la République",
    "avenue Jean Jaurès",
    "boulevard Pasteur",
    "rue Victor Hugo",
    "place du Général de Gaulle",
    "rue des Lilas",
    "avenue de la Libération",
    "rue du Port",
)
_SPECIALTIES = {
    "11490-0": (
        "Cardiologie",
        "Pneumologie",
        "Médecine interne",
        "Gériatrie",
        "Neurologie",
        "Gastro-entérologie",
        "Endocrinologie",
        "Néphrologie",
    ),
    "11502-2": ("Biologie médicale",),
    "18748-4": ("Radiologie et imagerie médicale",),
    "57833-6": ("Médecine générale", "Cardiologie", "Pneumologie", "Endocrinologie"),
    "34874-8": ("Chirurgie viscérale et digestive", "Chirurgie orthopédique et traumatologique"),
    "15507-7": ("Médecine d'urgence",),
}


@dataclass(frozen=True)
class _Patient:
    nir: str
    sex: int
    first: str
    last: str
    birth: date

    @property
    def label(self) -> str:
        return f"{'M.' if self.sex == 1 else 'Mme'} {self.last.upper()} {self.first}"

    @property
    def pt(self) -> str:
        return "Le patient" if self.sex == 1 else "La patiente"

    def age(self, day: date) -> int:
        return day.year - self.birth.year - ((day.month, day.day) < (self.birth.month, self.birth.day))

    @property
    def e(self) -> str:
        """The feminine ending for past participles and adjectives about the patient."""
        return "" if self.sex == 1 else "e"


@dataclass(frozen=True)
class _Author:
    rpps: str
    first: str
    last: str
    profession: str
    specialty: str

    @property
    def label(self) -> str:
        title = "" if self.profession == "midwife" else "Dr "
        return f"{title}{self.first} {self.last.upper()}"


@dataclass(frozen=True)
class _Facility:
    name: str
    finess: str
    address: str
    phone: str


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _rpps(rng: random.Random) -> str:
    body = "10" + "".join(rng.choice("0123456789") for _ in range(8))
    return body + _luhn_digit(body)


_DEPARTEMENTS = tuple(f"{d:02d}" for d in range(1, 96) if d != 20)


def _make_patients(rng: random.Random, count: int) -> list[_Patient]:
    patients: list[_Patient] = []
    seen: set[str] = set()
    while len(patients) < count:
        i = len(patients)
        sex = rng.choice((1, 2))
        # Patients 1 and 2 are born in Corse-du-Sud and Haute-Corse (both exist from 1976 on).
        corsica = {1: "2A", 2: "2B"}.get(i) if count >= 3 else None
        year = rng.randint(1976 if corsica else 1930, 2020)
        month = rng.randint(1, 12)
        dept = corsica or rng.choice(_DEPARTEMENTS)
        body = f"{sex}{year % 100:02d}{month:02d}{dept}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
        nir = with_key(body)
        if nir in seen:
            continue
        seen.add(nir)
        first = rng.choice(_MALE if sex == 1 else _FEMALE)
        patients.append(_Patient(nir, sex, first, rng.choice(_LAST), date(year, month, rng.randint(1, 28))))
    return patients


def _make_authors(rng: random.Random) -> dict[str, list[_Author]]:
    authors: dict[str, list[_Author]] = {}
    for code, doc_type in DOC_TYPES.items():
        pool = []
        for i in range(6):
            profession = doc_type.profession
            specialty = rng.choice(_SPECIALTIES[code])
            if code == "57833-6" and i > 0 and rng.random() < 0.2:
                profession, specialty = "midwife", "Sage-femme"
            first = rng.choice(_MALE + _FEMALE)
            pool.append(_Author(_rpps(rng), first, rng.choice(_LAST), profession, specialty))
        authors[code] = pool
    return authors


def _make_facilities(rng: random.Random) -> dict[str, list[_Facility]]:
    kinds = {
        "hospital": ("Centre hospitalier de {c}", "CHU de {c}", "Hôpital privé de {c}", "Clinique Saint-Joseph de {c}"),
        "lab": ("Laboratoire de biologie médicale BioSanté {c}", "Laboratoire d'analyses médicales de {c}"),
        "imaging": ("Centre d'imagerie médicale de {c}", "Cabinet de radiologie {c} Centre"),
        "office": ("Cabinet médical de {c}", "Maison de santé pluriprofessionnelle de {c}"),
    }
    out: dict[str, list[_Facility]] = {}
    for kind, patterns in kinds.items():
        pool = []
        for _ in range(4):
            city = rng.choice(list(_CITIES))
            address = f"{rng.randint(1, 120)} {rng.choice(_STREETS)}, {_CITIES[city]} {city}"
            phone = f"0{rng.randint(1, 5)} " + " ".join(f"{rng.randint(0, 99):02d}" for _ in range(4))
            finess = "".join(rng.choice("0123456789") for _ in range(9))
            name = rng.choice(patterns).format(c=city)
            if city[0] in "AEIOUÉ":
                name = name.replace(f" de {city}", f" d'{city}")
            pool.append(_Facility(name, finess, address, phone))
        out[kind] = pool
    return out


# ---------------------------------------------------------------------------------------------
# Document content: a list of pages, each a list of blocks, shared by the PDF and CDA writers
# ---------------------------------------------------------------------------------------------


@dataclass
class _Table:
    header: tuple[str, ...]
    widths: tuple[float, ...]
    rows: list[tuple[str, ...]]


@dataclass
class _Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    table: _Table | None = None


@dataclass
class _Doc:
    type_code: str
    title: str
    patient: _Patient
    author: _Author
    facility: _Facility
    service_date: date
    moment: datetime
    intro: list[str]
    pages: list[list[_Section]]
    heading: bool = True  # whether the first page shows the title (a letter may have none)


def _fr(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}".replace(".", ",")


def _d(day: date) -> str:
    return day.strftime("%d/%m/%Y")


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


def _treatment(rng: random.Random, count: int, child: bool = False, long_share: float = 0.7) -> list[str]:
    """Distinct drug lines, a `long_share` of them long-term ones, suited to adults or children."""
    lines: list[str] = []
    for _ in range(count * 4):
        line = _drug_line(rng, rng.random() < long_share, child)
        if all(line.split(",")[0] != other.split(",")[0] for other in lines):
            lines.append(line)
        if len(lines) == count:
            break
    return lines


def _vitals(rng: random.Random) -> str:
    return (
        f"Pression artérielle {rng.randint(100, 165)}/{rng.randint(55, 95)} mmHg, fréquence cardiaque "
        f"{rng.randint(55, 118)} battements par minute, saturation en oxygène {rng.randint(89, 100)} % en air "
        f"ambiant, température {_fr(rng.uniform(36.2, 39.4), 1)} °C."
    )


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


def _history(rng: random.Random, p: _Patient, day: date, k: int) -> str:
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


def _sentences(rng: random.Random, pool: Sequence[str], k: int, **values: object) -> list[str]:
    picks = rng.sample(list(pool), min(k, len(pool)))
    return [p.format(n=rng.randint(2, 12), y=rng.randint(1985, 2022), **values) for p in picks]


def _discharge(rng: random.Random, p: _Patient, a: _Author, day: date, pages: int) -> tuple[list[str], list[list[_Section]]]:
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
        f"Service de {service}. Hospitalisation du {_d(admitted)} au {_d(day)}.",
        f"Cher confrère, {p.label}, né{p.e} le {_d(p.birth)}, a été hospitalisé{p.e} dans notre service.",
    ]
    first = [
        _Section("Motif d'hospitalisation", [f"{p.pt} est adressé{p.e} pour {reason}."]),
        _Section("Antécédents", [_history(rng, p, day, rng.randint(2, 4))]),
        _Section("Examen clinique à l'entrée", [_vitals(rng)]),
        _Section("Évolution", [" ".join([course.format(n=rng.randint(2, 6)), *_sentences(rng, _EVOLUTION, rng.randint(1, 3), pt=p.pt)])]),
        _Section("Diagnostic de sortie", [diagnosis[0].upper() + diagnosis[1:] + "."]),
        _Section("Traitement de sortie", _treatment(rng, rng.randint(2, 5), child=age < 16)),
        _Section("Suites à prévoir", _sentences(rng, _FOLLOW_UP, rng.randint(1, 3))),
    ]
    result = [first]
    for _ in range(pages - 1):
        result.append(
            [
                _Section("Examens complémentaires", [f"Biologie du {_d(day - timedelta(days=1))} :"], _lab_table(rng, 6)),
                _Section("Compléments d'évolution", [" ".join(_sentences(rng, _EVOLUTION, 3, pt=p.pt))]),
            ]
        )
    result[-1].append(_Section("Signature", [f"{a.label}, service de {service}. RPPS {a.rpps}. Copie au médecin traitant."]))
    return intro, result


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


def _lab_table(rng: random.Random, k: int, panel: str | None = None) -> _Table:
    analytes = _PANELS[panel] if panel else tuple(a for rows in _PANELS.values() for a in rows)
    rows = []
    for name, unit, low, high, dec in rng.sample(list(analytes), min(k, len(analytes))):
        span = high - low
        value = rng.uniform(low - 0.3 * span, high + 0.3 * span) if rng.random() < 0.25 else rng.uniform(low, high)
        value = max(value, 0.0)
        flag = " H" if value > high else (" B" if value < low else "")
        previous = _fr(rng.uniform(low, high), dec) if rng.random() < 0.5 else "-"
        rows.append((name, _fr(value, dec) + flag, unit, f"{_fr(low, dec)} - {_fr(high, dec)}", previous))
    return _Table(("Analyse", "Résultat", "Unité", "Valeurs de référence", "Antériorité"), (62, 26, 22, 40, 30), rows)


_LAB_COMMENTS = (
    "Résultats contrôlés sur un second prélèvement.",
    "Les valeurs marquées H sont supérieures et les valeurs marquées B inférieures aux valeurs de référence.",
    "Hémolyse légère du prélèvement : interpréter le potassium avec prudence.",
    "Prélèvement réalisé à jeun.",
    "Résultats à interpréter en fonction du contexte clinique.",
    "Débit de filtration glomérulaire estimé (CKD-EPI) : {n}0 mL/min/1,73 m2.",
)


def _lab(rng: random.Random, p: _Patient, a: _Author, day: date, pages: int) -> tuple[list[str], list[list[_Section]]]:
    intro = [
        f"Prélèvement du {_d(day)} à {rng.randint(7, 11)}h{rng.randint(0, 59):02d}. Dossier n° {rng.randint(100000, 999999)}.",
        f"Prescripteur : Dr {rng.choice(_MALE + _FEMALE)} {rng.choice(_LAST).upper()}.",
    ]
    panels = rng.sample(list(_PANELS), min(len(_PANELS), pages + rng.randint(0, 1)))
    result: list[list[_Section]] = [[] for _ in range(pages)]
    for i, panel in enumerate(panels):
        result[i % pages].append(_Section(panel, [], _lab_table(rng, rng.randint(3, 7), panel)))
    result[-1].append(_Section("Commentaire du biologiste", _sentences(rng, _LAB_COMMENTS, rng.randint(1, 2))))
    result[-1].append(_Section("Validation", [f"Compte rendu validé par {a.label}, biologiste médical. RPPS {a.rpps}."]))
    return intro, result


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


def _imaging(rng: random.Random, p: _Patient, a: _Author, day: date, pages: int) -> tuple[list[str], list[list[_Section]]]:
    exam, indication, technique, normal, abnormal, abnormal_conclusion = rng.choice(_EXAMS)
    is_normal = rng.random() < 0.45
    intro = [f"Examen : {exam}, réalisé le {_d(day)}.", f"Médecin demandeur : Dr {rng.choice(_LAST).upper()}."]
    first = [
        _Section("Indication", [f"{p.pt} consulte pour {indication}."]),
        _Section("Technique", [technique, f"Examen n° {rng.randint(10000, 99999)}, images archivées sur le PACS de l'établissement."]),
        _Section("Résultats", [normal if is_normal else abnormal]),
        _Section("Conclusion", ["Examen sans anomalie significative." if is_normal else abnormal_conclusion]),
    ]
    result = [first]
    for i in range(pages - 1):
        result.append(
            [
                _Section(
                    f"Annexe {i + 1} : comparaison",
                    [
                        f"Comparaison avec l'examen du {_d(day - timedelta(days=rng.randint(60, 900)))}.",
                        "Les anomalies décrites n'étaient pas visibles sur l'examen antérieur."
                        if not is_normal
                        else "Aspect superposable à l'examen antérieur.",
                    ],
                ),
                _Section("Description détaillée", [normal, technique]),
            ]
        )
    result[-1].append(_Section("Signature", [f"{a.label}, radiologue. RPPS {a.rpps}."]))
    return intro, result


def _prescription(rng: random.Random, p: _Patient, a: _Author, day: date, pages: int) -> tuple[list[str], list[list[_Section]]]:
    child = p.age(day) < 16
    weight = rng.randint(12, 55) if child else rng.randint(45, 110)
    intro = [f"Fait le {_d(day)}.", f"Poids : {weight} kg."]
    lines = _treatment(rng, rng.randint(1, 5), child)
    first = [_Section("Prescription", lines)]
    if rng.random() < 0.4:
        first.append(_Section("Renouvellement", [f"À renouveler {rng.randint(1, 3)} fois."]))
    result = [first]
    if pages > 1:
        result.append(
            [
                _Section(
                    "Prescriptions relatives au traitement de l'affection de longue durée",
                    _treatment(rng, rng.randint(1, 3), child, long_share=1.0),
                ),
            ]
        )
    result[-1].append(_Section("Prescripteur", [f"{a.label}, {a.specialty}. RPPS {a.rpps}."]))
    return intro, result


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


def _operative(rng: random.Random, p: _Patient, a: _Author, day: date, pages: int) -> tuple[list[str], list[list[_Section]]]:
    name, anesthesia, steps = rng.choice(_OPERATIONS)
    consulted = _d(day - timedelta(days=rng.randint(10, 90)))
    intro = [
        f"Date de l'intervention : {_d(day)}. Opérateur : {a.label}. Aide : Dr {rng.choice(_LAST).upper()}.",
        f"Anesthésiste : Dr {rng.choice(_LAST).upper()}. Type d'anesthésie : {anesthesia}.",
    ]
    first = [
        _Section("Intervention", [name + "."]),
        _Section(
            "Indication",
            [
                f"{p.pt} présente une pathologie relevant d'une indication chirurgicale posée en consultation le {consulted}.",
            ],
        ),
        _Section("Déroulement", list(steps)),
        _Section("Fermeture", ["Fermeture plan par plan, surjet intradermique au fil résorbable. Pansement sec."]),
        _Section("Consignes post-opératoires", _sentences(rng, _POSTOP, rng.randint(2, 4))),
    ]
    result = [first]
    for _ in range(pages - 1):
        result.append(
            [
                _Section(
                    "Check-list sécurité du patient au bloc opératoire",
                    [
                        "Identité du patient vérifiée, site opératoire marqué, antibioprophylaxie réalisée avant l'incision.",
                        f"Durée opératoire : {rng.randint(35, 150)} minutes. Pertes sanguines estimées : {rng.randint(1, 40) * 10} mL.",
                    ],
                ),
                _Section("Comptes", ["Compte des compresses et des instruments vérifié et conforme en fin d'intervention."]),
            ]
        )
    result[-1].append(_Section("Signature", [f"{a.label}, chirurgien. RPPS {a.rpps}."]))
    return intro, result


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


def _emergency(rng: random.Random, p: _Patient, a: _Author, day: date, pages: int) -> tuple[list[str], list[list[_Section]]]:
    reason, exam, diagnosis, outcome = rng.choice(_EMERGENCIES)
    hour = rng.randint(0, 23)
    arrival = rng.choice(("moyens personnels", "pompiers", "ambulance privée", "SMUR"))
    intro = [f"Arrivée aux urgences le {_d(day)} à {hour}h{rng.randint(0, 59):02d}. Mode d'arrivée : {arrival}."]
    first = [
        _Section("Motif de recours", [f"{p.pt} consulte pour {reason}."]),
        _Section("Antécédents", [_history(rng, p, day, rng.randint(1, 3))]),
        _Section("Constantes à l'arrivée", [_vitals(rng)]),
        _Section("Examen clinique", [exam]),
        _Section("Diagnostic", [diagnosis]),
        _Section("Orientation", [outcome]),
        _Section("Traitement", _treatment(rng, rng.randint(1, 2), p.age(day) < 16, long_share=0.0)),
    ]
    result = [first]
    for _ in range(pages - 1):
        result.append(
            [
                _Section("Résultats biologiques", [], _lab_table(rng, 5, rng.choice(("Biochimie", "Hématologie", "Hémostase")))),
                _Section(
                    "Transmissions infirmières",
                    [
                        f"Surveillance horaire des constantes, stables. Évaluation de la douleur : EVA {rng.randint(1, 8)}/10.",
                    ],
                ),
            ]
        )
    result[-1].append(_Section("Signature", [f"{a.label}, médecin urgentiste. RPPS {a.rpps}."]))
    return intro, result


_BUILDERS: dict[str, Callable[[random.Random, _Patient, _Author, date, int], tuple[list[str], list[list[_Section]]]]] = {
    "11490-0": _discharge,
    "11502-2": _lab,
    "18748-4": _imaging,
    "57833-6": _prescription,
    "34874-8": _operative,
    "15507-7": _emergency,
}
_FACILITY_KIND = {"11502-2": "lab", "18748-4": "imaging", "57833-6": "office"}


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

_TRANSLIT = str.maketrans(
    {
        "œ": "oe",
        "Œ": "OE",
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "…": "...",
        "€": "EUR",
        "≤": "<=",
        "≥": ">=",
        "\u202f": " ",
        "\u2009": " ",
    }
)


def _latin1(text: str) -> str:
    """Make `text` printable with the PDF core fonts (latin-1 only)."""
    text = text.translate(_TRANSLIT)
    if text.isascii() or all(ord(ch) < 256 for ch in text):
        return text
    return "".join(ch if ord(ch) < 256 else _fold(ch) for ch in text)


def _fold(ch: str) -> str:
    """A character outside latin-1 as its closest latin-1 letters (Ł -> L), or nothing."""
    return "".join(c for c in unicodedata.normalize("NFKD", ch) if ord(c) < 256 and not unicodedata.combining(c))


class _Pdf(FPDF):
    facility_line = ""
    address_line = ""
    footer_line = ""

    def header(self) -> None:
        self.set_font("helvetica", "B", 10)
        self.cell(0, 5, self.facility_line, new_x="LMARGIN", new_y="NEXT")
        self.set_font("helvetica", "", 8)
        self.cell(0, 4, self.address_line, new_x="LMARGIN", new_y="NEXT")
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font("helvetica", "", 8)
        self.cell(0, 5, f"{self.footer_line} - page {self.page_no()}/{{nb}}", align="C")


def _render_pdf(doc: _Doc) -> bytes:
    p = doc.patient
    pdf = _Pdf(format="A4")
    pdf.set_creation_date(doc.moment)
    if doc.heading:
        pdf.set_title(_latin1(doc.title))
    pdf.set_author(_latin1(doc.author.label))
    pdf.set_creator("pipeline.samples")
    pdf.set_auto_page_break(True, margin=18)
    pdf.facility_line = _latin1(doc.facility.name)
    pdf.address_line = _latin1(f"{doc.facility.address} - Tél. {doc.facility.phone} - FINESS {doc.facility.finess}")
    pdf.footer_line = _latin1(f"{p.last.upper()} {p.first} - né{p.e} le {_d(p.birth)}")
    for number, sections in enumerate(doc.pages):
        pdf.add_page()
        if number == 0:
            if doc.heading:
                pdf.set_font("helvetica", "B", 15)
                pdf.cell(0, 9, _latin1(doc.title), new_x="LMARGIN", new_y="NEXT", align="C")
            pdf.set_font("helvetica", "", 10)
            pdf.cell(0, 5, _latin1(f"Patient{p.e} : {p.label}, né{p.e} le {_d(p.birth)} - INS {p.nir}"), new_x="LMARGIN", new_y="NEXT")
            for line in doc.intro:
                _paragraph(pdf, _latin1(line))
            pdf.ln(2)
        for section in sections:
            pdf.set_font("helvetica", "B", 11)
            pdf.cell(0, 7, _latin1(section.heading), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("helvetica", "", 10)
            for paragraph in section.paragraphs:
                _paragraph(pdf, _latin1(paragraph))
            if section.table is not None:
                _render_table(pdf, section.table)
            pdf.ln(1.5)
    return bytes(pdf.output())


_HELVETICA = CORE_FONTS_CHARWIDTHS["helvetica"]


def _paragraph(pdf: FPDF, text: str, height: float = 5) -> None:
    """Write `text` (regular Helvetica, latin-1) word-wrapped to the page width.

    Greedy wrapping on the core font's widths, one cell per line: several times faster than
    `multi_cell`, whose per-character line breaking dominates the generation time.
    """
    limit = (pdf.epw - 2 * pdf.c_margin) * 1000 / pdf.font_size
    space = _HELVETICA[" "]
    line: list[str] = []
    used = 0
    for word in text.split():
        width = sum(_HELVETICA.get(ch, 556) for ch in word)
        if line and used + space + width > limit:
            pdf.cell(0, height, " ".join(line), new_x="LMARGIN", new_y="NEXT")
            line, used = [], 0
        used += width + (space if line else 0)
        line.append(word)
    pdf.cell(0, height, " ".join(line), new_x="LMARGIN", new_y="NEXT")


def _render_table(pdf: FPDF, table: _Table) -> None:
    pdf.set_font("helvetica", "B", 9)
    for text, width in zip(table.header, table.widths, strict=True):
        pdf.cell(width, 6, _latin1(text), border=1)
    pdf.ln()
    pdf.set_font("helvetica", "", 9)
    for row in table.rows:
        for text, width in zip(row, table.widths, strict=True):
            pdf.cell(width, 5.5, _latin1(text), border=1)
        pdf.ln()
    pdf.set_font("helvetica", "", 10)


def _x(text: str) -> str:
    return _xml_escape(text, {'"': "&quot;"})


def _render_cda(doc: _Doc, source_id: str, set_id: str) -> bytes:
    p, a, f = doc.patient, doc.author, doc.facility
    doc_type = DOC_TYPES[doc.type_code]
    when = doc.moment.strftime("%Y%m%d%H%M%S")
    sections = []
    for page in doc.pages:
        for section in page:
            body = "".join(f"<paragraph>{_x(t)}</paragraph>" for t in section.paragraphs)
            if section.table is not None:
                head = "".join(f"<th>{_x(h)}</th>" for h in section.table.header)
                rows = "".join("<tr>" + "".join(f"<td>{_x(c)}</td>" for c in row) + "</tr>" for row in section.table.rows)
                body += f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            sections.append(
                f"      <component>\n        <section>\n          <title>{_x(section.heading)}</title>\n"
                f"          <text>{body}</text>\n        </section>\n      </component>\n"
            )
    intro = "".join(f"<paragraph>{_x(t)}</paragraph>" for t in doc.intro)
    sections.insert(
        0,
        f"      <component>\n        <section>\n          <title>Informations</title>\n"
        f"          <text>{intro}</text>\n        </section>\n      </component>\n",
    )
    gender = "M" if p.sex == 1 else "F"
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="1.2.250.1.999.1.1" extension="{_x(source_id)}"/>
  <code code="{doc_type.code}" codeSystem="{LOINC_OID}" codeSystemName="LOINC" displayName="{_x(doc_type.display_name)}"/>
  <title>{_x(doc.title)}</title>
  <effectiveTime value="{when}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="1.2.250.1.999.1.2" extension="{_x(set_id)}"/>
  <versionNumber value="1"/>
  <recordTarget>
    <patientRole>
      <id root="{INS_OID_NIR}" extension="{p.nir}"/>
      <patient>
        <name><given>{_x(p.first)}</given><family qualifier="BR">{_x(p.last)}</family></name>
        <administrativeGenderCode code="{gender}" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="{p.birth.strftime("%Y%m%d")}"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="{when}"/>
    <assignedAuthor>
      <id root="1.2.250.1.71.4.2.1" extension="8{a.rpps}"/>
      <assignedPerson><name><given>{_x(a.first)}</given><family>{_x(a.last)}</family></name></assignedPerson>
      <representedOrganization><name>{_x(f.name)}</name></representedOrganization>
    </assignedAuthor>
  </author>
  <custodian>
    <assignedCustodian>
      <representedCustodianOrganization>
        <id root="1.2.250.1.71.4.2.2" extension="1{f.finess}"/>
        <name>{_x(f.name)}</name>
      </representedCustodianOrganization>
    </assignedCustodian>
  </custodian>
  <component>
    <structuredBody>
{"".join(sections)}    </structuredBody>
  </component>
</ClinicalDocument>
"""
    return xml.encode("utf-8")


def _render_scan(doc: _Doc, rng: random.Random) -> bytes:
    """A scanned page: one image, no text layer (only the file name can tell what it is)."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(doc.moment)
    pdf.set_creator("pipeline.samples")
    pdf.add_page()
    pdf.image(io.BytesIO(_png(rng, 42, 60)), x=10, y=10, w=190, h=271)
    return bytes(pdf.output())


def _png(rng: random.Random, width: int = 48, height: int = 32) -> bytes:
    """A small valid grayscale PNG (a noisy gradient, like a scanned strip)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(min(255, (x * 5 + y * 3 + rng.randint(0, 20))) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------


def _slug(title: str) -> str:
    """A title as file-name words: "Compte rendu d'imagerie" -> "compte-rendu-d-imagerie"."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", title.lower()) if not unicodedata.combining(c))
    return "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in plain).split())


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


def _administrative(rng: random.Random, p: _Patient, a: _Author, f: _Facility, day: date, moment: datetime) -> _Doc:
    """A good PDF that is no medical document: expected 95 / unknown."""
    title, paragraphs = rng.choice(_ADMINISTRATIVE)
    city = rng.choice(list(_CITIES))
    values = {
        "day": _d(day),
        "later": _d(day + timedelta(days=rng.randint(7, 60))),
        "address": f"{rng.randint(1, 120)} {rng.choice(_STREETS)}, {_CITIES[city]} {city}",
        "count": rng.randint(2, 12),
        "hour": rng.randint(8, 17),
        "minute": rng.choice((0, 15, 30, 45)),
    }
    body = [_Section(title, [paragraph.format(**values) for paragraph in paragraphs])]
    return _Doc(UNKNOWN_TYPE, NEUTRAL_TITLE, p, a, f, day, moment, [f"Le {_d(day)}."], [body], heading=False)


def _pages(rng: random.Random) -> int:
    return rng.choices((1, 2, 3, 4), weights=(50, 30, 14, 6))[0]


def _spread(total: int, share: float, minimum: int) -> int:
    return min(total, max(minimum, round(total * share)))


def _wrong_key(nir: str) -> str:
    key = nir_key(nir[:13])
    return f"{nir[:13]}{key + 1 if key < 97 else key - 1:02d}"


NEUTRAL_TITLE = "Courrier"
"""The manifest title of documents whose title says nothing of their type."""

# Rows without a code or name in document_type: how the type shows (see the module docstring).
NO_TYPE_FLAVORS = ("empty", "untitled", "filename", "administrative")


def _row_type(flavor: str, code: str, rng: random.Random) -> str:
    if flavor in NO_TYPE_FLAVORS:
        return ""
    if flavor == "name":
        names = [name for name, c in COMMON_TYPE_NAMES.items() if c == code]
        return rng.choice(names) if names else code
    return code


def generate_samples(out: Path, patients: int = 20, documents: int = 200, seed: int = 0, bad: bool = True) -> SampleSummary:
    """Write a synthetic batch (documents, manifest.csv, expected.csv) into the new folder `out`.

    `out` is created; a ValueError is raised when it exists and is not empty, or when
    `patients` or `documents` is below 1. The manifest has exactly `documents` rows spread over
    `patients` distinct valid NIRs (one in 2A and one in 2B from 3 patients on). With `bad`,
    about 5 % of the rows are faulty (from 20 documents on, at least one of each: truncated PDF,
    PNG named .pdf, wrong INS key, empty file, listed but missing file) and one extra PDF is
    written without a manifest row. Same arguments, same bytes.
    """
    if patients < 1 or documents < 1:
        raise ValueError("patients and documents must be at least 1")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(seed)
    tag = hashlib.sha256(f"{seed}:{patients}:{documents}:{bad}".encode()).hexdigest()[:8].upper()
    people = _make_patients(rng, patients)
    authors = _make_authors(rng)
    facilities = _make_facilities(rng)
    type_codes = list(DOC_TYPES)
    type_weights = [DOC_TYPES[c].weight for c in type_codes]

    # Which rows are faulty, and how.
    bad_kinds: list[str] = []
    if bad:
        if documents >= 20:
            count = max(len(BAD_KINDS), round(documents * 0.05))
            bad_kinds = list(BAD_KINDS) + [_REPEATABLE_BAD[i % len(_REPEATABLE_BAD)] for i in range(count - len(BAD_KINDS))]
        else:
            bad_kinds = list(BAD_KINDS)[: round(documents * 0.05)]
    with_unlisted = bad and documents >= 20
    positions = rng.sample(range(documents), len(bad_kinds))
    bad_at = dict(zip(positions, bad_kinds, strict=True))
    good_positions = [i for i in range(documents) if i not in bad_at]
    cda_at = set(rng.sample(good_positions, _spread(len(good_positions), 0.05, 1 if documents >= 20 else 0)))
    pdf_positions = [i for i in good_positions if i not in cda_at]
    flavors: dict[int, str] = {}
    picked = rng.sample(pdf_positions, min(len(pdf_positions), _spread(len(pdf_positions), 0.1, 2 if documents >= 20 else 0)))
    # "empty": the title tells the type; "untitled": only the text does; "filename": only the file name does.
    cycle = ("empty", "untitled", "name", "name", "filename", "untitled", "name", "name")
    for n, i in enumerate(picked):
        flavors[i] = cycle[n % len(cycle)]
    headless = {i for n, i in enumerate(picked) if n % len(cycle) == 5}  # half the untitled: no heading either
    # Administrative notes and scans draw from their own generator: they do not reshuffle the rest of the batch.
    extra = random.Random(f"{tag}:content")
    plain = [i for i in pdf_positions if i not in flavors]
    for i in extra.sample(plain, min(len(plain), _spread(len(pdf_positions), 0.02, 1 if documents >= 20 else 0))):
        flavors[i] = "administrative"

    # Every patient gets a document first (when there are enough), then a skewed spread.
    owners = list(range(min(patients, documents)))
    rng.shuffle(owners)
    weights = [rng.randint(1, 6) for _ in range(patients)]
    owners += rng.choices(range(patients), weights=weights, k=documents - len(owners))

    manifest_rows: list[dict[str, str]] = []
    expected_rows: list[dict[str, str]] = []
    total = documents + (1 if with_unlisted else 0)
    for i in range(total):
        unlisted = i == documents
        patient = people[owners[i]] if not unlisted else people[rng.randrange(patients)]
        kind = bad_at.get(i, "")
        is_cda = i in cda_at
        code = rng.choices(type_codes, weights=type_weights)[0]
        doc_type = DOC_TYPES[code]
        service_date = REFERENCE_DATE - timedelta(days=rng.randint(0, 3 * 365 - 1))
        # Midwives prescribe here for women of child-bearing age only.
        midwife_ok = patient.sex == 2 and 18 <= patient.age(service_date) <= 45
        author = rng.choice([a for a in authors[code] if midwife_ok or a.profession != "midwife"])
        facility = rng.choice(facilities[_FACILITY_KIND.get(code, "hospital")])
        moment = datetime(
            service_date.year, service_date.month, service_date.day, rng.randint(7, 19), rng.randint(0, 59), rng.randint(0, 59), tzinfo=UTC
        )
        pages = _pages(rng) if kind != "truncated_pdf" else rng.randint(2, 4)
        pages = min(pages, 2) if code == "57833-6" else pages
        intro, content = _BUILDERS[code](rng, patient, author, service_date, pages)
        flavor = flavors.get(i, "code")
        doc = _Doc(code, doc_type.title, patient, author, facility, service_date, moment, intro, content, heading=i not in headless)
        if flavor == "administrative":
            doc = _administrative(extra, patient, author, extra.choice(facilities["office"] + facilities["hospital"]), service_date, moment)
        source_id = f"SRC-{tag}-{i + 1:06d}"
        name = f"doc-{i + 1:06d}.{'xml' if is_cda else 'pdf'}"
        if flavor == "filename":
            name = f"doc-{i + 1:06d}-{_slug(doc_type.title)}.pdf"
        path = out / name

        # The manifest's document_type: a code, a common name or empty; a CDA's may also differ.
        row_type = _row_type(flavor, code, rng)
        if is_cda:
            row_type = rng.choice(("", code, rng.choice([c for c in type_codes if c != code])))

        if kind == "missing":
            pass
        elif kind == "empty_pdf":
            path.write_bytes(b"")
        elif kind == "png_as_pdf":
            path.write_bytes(_png(rng))
        elif kind == "truncated_pdf":
            data = _render_pdf(doc)
            path.write_bytes(data[: int(len(data) * 0.4)])
        elif is_cda:
            path.write_bytes(_render_cda(doc, source_id, f"SET-{tag}-{i + 1:06d}"))
        elif flavor == "filename":
            path.write_bytes(_render_scan(doc, extra))
        else:
            path.write_bytes(_render_pdf(doc))

        if unlisted:
            expected_rows.append(_expected(name, UNLISTED_REASON))
            continue
        manifest_rows.append(
            {
                "file": name,
                "patient_ins": _wrong_key(patient.nir) if kind == "wrong_ins_key" else patient.nir,
                "source_document_id": source_id,
                "title": NEUTRAL_TITLE if flavor in ("untitled", "filename", "administrative") else doc.title,
                "document_type": row_type,
                "service_date": service_date.isoformat(),
                "author_id": author.rpps,
                "author_profession": author.profession,
            }
        )
        if kind:
            expected_rows.append(_expected(name, BAD_KINDS[kind]))
        elif flavor == "administrative":
            expected_rows.append(_expected(name, "", UNKNOWN_CLASS, UNKNOWN_TYPE))
        else:  # by its own code, the manifest's code or name, its title, its text or its file name
            wanted = DOC_TYPES[code]
            expected_rows.append(_expected(name, "", wanted.class_code, wanted.code))

    _write_csv(out / "manifest.csv", MANIFEST_COLUMNS, manifest_rows)
    _write_csv(out / "expected.csv", EXPECTED_COLUMNS, expected_rows)
    good = sum(1 for r in expected_rows if r["expected_state"] == "indexed")
    return SampleSummary(
        out=out,
        documents=len(manifest_rows),
        good=good,
        bad=len(expected_rows) - good,
        patients=len(set(owners)),
    )


def _expected(name: str, reason: str, class_code: str = "", type_code: str = "") -> dict[str, str]:
    return {
        "file": name,
        "expected_state": "rejected" if reason else "indexed",
        "expected_reason": reason,
        "class_code": class_code,
        "type_code": type_code,
    }


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
