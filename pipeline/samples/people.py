"""Synthetic people and places: patients (valid NIRs, two born in Corsica), authors (RPPS numbers,
professions, specialties) and facilities (FINESS numbers, addresses)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from pipeline.core.identity import with_key
from pipeline.samples.vocabulary import DOC_TYPES

MALE = (
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
FEMALE = (
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
LAST = (
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
CITIES: dict[str, str] = {
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
STREETS = (
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
class Patient:
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
class Author:
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
class Facility:
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


def make_patients(rng: random.Random, count: int) -> list[Patient]:
    patients: list[Patient] = []
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
        first = rng.choice(MALE if sex == 1 else FEMALE)
        patients.append(Patient(nir, sex, first, rng.choice(LAST), date(year, month, rng.randint(1, 28))))
    return patients


def make_authors(rng: random.Random) -> dict[str, list[Author]]:
    authors: dict[str, list[Author]] = {}
    for code, doc_type in DOC_TYPES.items():
        pool = []
        for i in range(6):
            profession = doc_type.profession
            specialty = rng.choice(_SPECIALTIES[code])
            if code == "57833-6" and i > 0 and rng.random() < 0.2:
                profession, specialty = "midwife", "Sage-femme"
            first = rng.choice(MALE + FEMALE)
            pool.append(Author(_rpps(rng), first, rng.choice(LAST), profession, specialty))
        authors[code] = pool
    return authors


def make_facilities(rng: random.Random) -> dict[str, list[Facility]]:
    kinds = {
        "hospital": ("Centre hospitalier de {c}", "CHU de {c}", "Hôpital privé de {c}", "Clinique Saint-Joseph de {c}"),
        "lab": ("Laboratoire de biologie médicale BioSanté {c}", "Laboratoire d'analyses médicales de {c}"),
        "imaging": ("Centre d'imagerie médicale de {c}", "Cabinet de radiologie {c} Centre"),
        "office": ("Cabinet médical de {c}", "Maison de santé pluriprofessionnelle de {c}"),
    }
    out: dict[str, list[Facility]] = {}
    for kind, patterns in kinds.items():
        pool = []
        for _ in range(4):
            city = rng.choice(list(CITIES))
            address = f"{rng.randint(1, 120)} {rng.choice(STREETS)}, {CITIES[city]} {city}"
            phone = f"0{rng.randint(1, 5)} " + " ".join(f"{rng.randint(0, 99):02d}" for _ in range(4))
            finess = "".join(rng.choice("0123456789") for _ in range(9))
            name = rng.choice(patterns).format(c=city)
            if city[0] in "AEIOUÉ":
                name = name.replace(f" de {city}", f" d'{city}")
            pool.append(Facility(name, finess, address, phone))
        out[kind] = pool
    return out
