"""Classification order: the document's own code, the manifest (code, then name), the content, else 95/unknown."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from defusedxml import ElementTree
from pypdf import PdfReader

from pipeline.documents import classify as classify_module
from pipeline.documents.classify import TEXT_LIMIT, Classification, classify, fold, needs_content, rules, vocabulary
from pipeline.samples import generate_samples

HL7 = "{urn:hl7-org:v3}"
NEUTRAL = "Courrier"

# ---------------------------------------------------------------------------------------------
# Order
# ---------------------------------------------------------------------------------------------


LOINC = "2.16.840.1.113883.6.1"
SNOMED_CT = "2.16.840.1.113883.6.96"


def test_the_cda_code_wins_over_the_manifest_and_the_content():
    result = classify("11502-2", "57833-6", "Ordonnance", "ordonnance.pdf", "Ordonnance de médicaments", cda_code_system=LOINC)
    assert (result.class_code, result.type_code, result.rule, result.confidence) == ("10", "11502-2", "cda_code", 1.0)


def test_an_unknown_cda_code_falls_back_to_the_manifest():
    result = classify("99999-9", "57833-6", None)
    assert (result.type_code, result.rule) == ("57833-6", "manifest_code")


def test_a_loinc_code_under_another_code_system_is_not_the_documents_code():
    result = classify("11502-2", "57833-6", None, cda_code_system=SNOMED_CT)
    assert (result.type_code, result.rule) == ("57833-6", "manifest_code")


def test_a_cda_code_without_its_code_system_is_not_trusted():
    assert classify("11502-2", None, None).rule != "cda_code"


def test_a_dmp_type_code_counts_under_the_dmp_code_system_only():
    assert classify("EXPPAT_3", None, None, cda_code_system="1.2.250.1.213.1.1.4.12").rule == "cda_code"
    assert classify("EXPPAT_3", None, None, cda_code_system=LOINC).rule != "cda_code"


def test_a_manifest_loinc_code_gives_class_and_type():
    result = classify(None, " 57833-6 ", None)
    assert (result.class_code, result.type_code, result.rule, result.confidence) == ("42", "57833-6", "manifest_code", 0.95)


def test_a_manifest_local_code_is_read_without_case():
    assert (classify(None, "exppat_3", None).class_code, classify(None, "exppat_3", None).type_code) == ("90", "EXPPAT_3")


def test_the_manifest_code_wins_over_the_content():
    result = classify(None, "11502-2", "Compte rendu opératoire", "cr-operatoire.pdf", "Compte rendu opératoire")
    assert (result.type_code, result.rule) == ("11502-2", "manifest_code")


@pytest.mark.parametrize(
    ("name", "type_code"),
    [
        ("Compte rendu operatoire", "34874-8"),
        ("COMPTE-RENDU OPÉRATOIRE", "34874-8"),
        ("compte rendu d’hospitalisation", "34112-3"),
        ("Lettre de liaison", "11490-0"),
        ("Directives anticipees", "EXPPAT_3"),
        ("certificat médical", "CERT"),
        ("Synthèse psychiatrique", "59259-2"),
        ("compte rendu d'accouchement", "15508-5"),
    ],
)
def test_a_manifest_common_name_in_french_is_understood_without_accents_or_case(name, type_code):
    result = classify(None, name, None)
    assert (result.type_code, result.rule) == (type_code, "manifest_name")


@pytest.mark.parametrize(
    ("name", "type_code"),
    [
        ("Discharge Summary", "11490-0"),
        ("lab report", "11502-2"),
        ("Radiology report", "18748-4"),
        ("Advance directive", "EXPPAT_3"),
        ("Immunization history", "11369-6"),
    ],
)
def test_a_manifest_common_name_in_english_is_understood(name, type_code):
    result = classify(None, name, None)
    assert (result.type_code, result.rule) == (type_code, "manifest_name")


def test_an_unknown_manifest_type_reads_like_a_title():
    result = classify(None, "CR d'échographie", NEUTRAL)
    assert (result.type_code, result.rule) == ("18748-4", "content")


# ---------------------------------------------------------------------------------------------
# Content: title, file name, text
# ---------------------------------------------------------------------------------------------

TITLES = [
    ("Compte rendu de biologie du 3 mars", "11502-2"),
    ("Résultats d'analyses médicales", "11502-2"),
    ("Laboratory results", "11502-2"),
    ("Lettre de liaison de sortie", "11490-0"),
    ("Discharge letter", "11490-0"),
    ("Compte rendu d'hospitalisation", "34112-3"),
    ("Inpatient stay report", "34112-3"),
    ("Consultation de cardiologie", "11488-4"),
    ("Clinic letter", "11488-4"),
    ("CR opératoire", "34874-8"),
    ("Operative note", "34874-8"),
    ("Passage aux urgences du 12/03", "15507-7"),
    ("Emergency department report", "15507-7"),
    ("IRM du genou droit", "18748-4"),
    ("Chest X-ray report", "18748-4"),
    ("Ordonnance de médicaments", "57833-6"),
    ("Medication prescription", "57833-6"),
    ("Ordonnance de soins infirmiers", "57832-8"),
    ("Physiotherapy prescription", "57832-8"),
    ("Ordonnance d'examens biologiques", "57828-6"),
    ("Laboratory request", "57828-6"),
    ("Délivrance de médicaments", "60593-1"),
    ("Medication dispensing record", "60593-1"),
    ("Certificat de vaccination", "87273-9"),
    ("Vaccination note", "87273-9"),
    ("Carnet de vaccination", "11369-6"),
    ("Immunisation history", "11369-6"),
    ("Synthèse médicale", "60591-5"),
    ("Synthèse", "60591-5"),
    ("Patient summary", "60591-5"),
    ("Synthèse psychiatrique", "59259-2"),
    ("Synthèse de séjour en psychiatrie", "59259-2"),
    ("Psychiatry summary", "59259-2"),
    ("Compte rendu d'accouchement", "15508-5"),
    ("CR d'accouchement du 02/11", "15508-5"),
    ("Labour and delivery summary", "15508-5"),
    ("Mes directives anticipées", "EXPPAT_3"),
    ("Living will", "EXPPAT_3"),
    ("Certificat médical de non contre-indication au sport", "CERT"),
    ("Sick note", "CERT"),
]


@pytest.mark.parametrize(("title", "type_code"), TITLES)
def test_the_title_decides_when_the_manifest_says_nothing(title, type_code):
    result = classify(None, "", title)
    assert (result.type_code, result.class_code, result.rule) == (type_code, vocabulary().by_code[type_code], "content")


FILENAMES = [
    ("2024-03-03_CR_bio.pdf", "11502-2"),
    ("lettre-de-liaison-sortie.pdf", "11490-0"),
    ("CompteRenduOperatoire.pdf", "34874-8"),
    ("passage_urgences_0312.pdf", "15507-7"),
    ("echographie abdominale.pdf", "18748-4"),
    ("ordonnance_scan.pdf", "57833-6"),
    ("directives_anticipees.pdf", "EXPPAT_3"),
    ("living-will.pdf", "EXPPAT_3"),
    ("vaccination_grippe.pdf", "87273-9"),
    ("discharge_summary.pdf", "11490-0"),
    ("certificat.pdf", "CERT"),
]


@pytest.mark.parametrize(("filename", "type_code"), FILENAMES)
def test_the_file_name_decides_when_the_title_is_neutral(filename, type_code):
    result = classify(None, None, NEUTRAL, filename)
    assert (result.type_code, result.rule) == (type_code, "content")


TEXTS = [
    (
        "Lettre de liaison à la sortie. Madame X a été hospitalisée du 03/02/2025 au 10/02/2025 en cardiologie. "
        "Traitement de sortie : bisoprolol 2,5 mg.",
        "11490-0",
    ),
    (
        "Discharge summary. Date of admission: 3 Feb 2025. Date of discharge: 10 Feb 2025. Discharge medications: bisoprolol.",
        "11490-0",
    ),
    ("Compte rendu d'hospitalisation. Motif d'hospitalisation : pneumopathie. Évolution dans le service favorable.", "34112-3"),
    ("Hospital stay report. Reason for admission: pneumonia. The hospital course was uneventful.", "34112-3"),
    (
        "Compte rendu de consultation de cardiologie. Cher confrère, j'ai vu en consultation votre patient. Conduite à tenir : "
        "poursuite du traitement, à revoir dans 6 mois.",
        "11488-4",
    ),
    (
        "Consultation note. Thank you for referring Mr X, whom I saw in clinic today. Assessment and plan: review in clinic in six months.",
        "11488-4",
    ),
    (
        "Compte rendu opératoire. Opérateur : Dr A. Type d'anesthésie : anesthésie générale. Incision médiane, fermeture plan par plan.",
        "34874-8",
    ),
    (
        "Operative report. Surgeon: Dr A. Preoperative diagnosis: appendicitis. Procedure performed: laparoscopic "
        "appendectomy. Estimated blood loss: 20 mL.",
        "34874-8",
    ),
    ("Arrivée aux urgences à 23h10. Mode d'arrivée : pompiers. Motif de recours : chute de sa hauteur.", "15507-7"),
    ("Emergency department visit. Chief complaint: chest pain. Triage category 3, arrived by ambulance.", "15507-7"),
    (
        "Laboratoire de biologie médicale. Prélèvement du 02/03/2025. Hémoglobine 13,2 g/dL, valeurs de référence 12 - 16. "
        "Biologiste responsable : Dr B.",
        "11502-2",
    ),
    (
        "Laboratory results. Specimen collected on 2 March 2025. Haemoglobin 13.2 g/dL (reference range 12-16). Platelets 250.",
        "11502-2",
    ),
    (
        "Échographie abdominale. Technique : sonde convexe. Foie d'échostructure homogène. Conclusion : examen normal. Dr C, radiologue.",
        "18748-4",
    ),
    ("Chest X-ray, two views. Findings: no consolidation. Comparison with the prior study. Radiologist: Dr C.", "18748-4"),
    ("Ordonnance. Amoxicilline 1 g : 1 comprimé matin et soir pendant 7 jours. À renouveler 2 fois.", "57833-6"),
    ("Prescription. Amoxicillin 500 mg: take one capsule three times a day for 7 days. Refills: 0.", "57833-6"),
    ("Ordonnance de soins infirmiers : pansement quotidien à domicile par infirmière diplômée d'État pendant 15 jours.", "57832-8"),
    ("Prescription for home nursing: daily wound dressing by a nurse for two weeks.", "57832-8"),
    ("Prescription d'examens : merci de faire pratiquer une NFS et une glycémie à jeun.", "57828-6"),
    ("Laboratory request: please perform a full blood count, fasting.", "57828-6"),
    ("Dispensation de médicaments. Pharmacie du Centre. Délivré le 03/03/2025 : paracétamol 1 g, quantité délivrée : 2 boîtes.", "60593-1"),
    ("Dispensing record. Medication dispensed on 3 March 2025 by the pharmacist: paracetamol 500 mg, quantity dispensed 16.", "60593-1"),
    (
        "Acte de vaccination : vaccin contre la grippe saisonnière administré le 15/10/2024, numéro de lot AB123, "
        "voie intramusculaire, deltoïde gauche.",
        "87273-9",
    ),
    ("Vaccine administered: influenza vaccine, lot number X1, intramuscular injection in the left deltoid.", "87273-9"),
    ("Carnet de vaccination. Vaccinations réalisées : DTP en 2010, ROR en 1995. Prochain rappel en 2030.", "11369-6"),
    ("Immunization history. Vaccines received: MMR (1995), tetanus booster (2015). Next booster due in 2035.", "11369-6"),
    (
        "Volet de synthèse médicale. Pathologies en cours : diabète de type 2. Traitements au long cours : metformine.",
        "60591-5",
    ),
    ("Patient summary. Active problems: type 2 diabetes. Current medications: metformin. Allergies: none.", "60591-5"),
    (
        "Mes directives anticipées. Je soussignée Marie Dupont, en pleine possession de mes facultés, refuse tout acharnement "
        "thérapeutique. Ma personne de confiance est ma fille.",
        "EXPPAT_3",
    ),
    (
        "Advance directive. I, the undersigned, being of sound mind, do not wish to receive life-sustaining treatment. "
        "My health care proxy is my daughter.",
        "EXPPAT_3",
    ),
    (
        "Je soussigné, Dr Martin, certifie avoir examiné ce jour M. X et n'avoir constaté aucune contre-indication à la pratique "
        "du football. Certificat remis en main propre pour servir et valoir ce que de droit.",
        "CERT",
    ),
    ("Medical certificate. I hereby certify that I examined Mr X today and that he is unfit for work until 12 March.", "CERT"),
]


@pytest.mark.parametrize(("text", "type_code"), TEXTS, ids=[f"{code}-{n}" for n, (_, code) in enumerate(TEXTS)])
def test_the_text_decides_when_title_and_file_name_are_neutral(text, type_code):
    result = classify(None, "", NEUTRAL, "scan-0001.pdf", text)
    assert (result.type_code, result.class_code, result.rule) == (type_code, vocabulary().by_code[type_code], "content")
    assert 0.0 < result.confidence <= 0.85


def test_the_title_weighs_more_than_the_text():
    text = "Prélèvement du 02/03/2025. Valeurs de référence. Hémoglobine 13,2 g/dL."
    assert classify(None, "", "Ordonnance", None, text).type_code == "57833-6"


def test_a_precise_title_beats_a_generic_one():
    assert classify(None, "", "Ordonnance de soins").type_code == "57832-8"
    assert classify(None, "", "Certificat de vaccination").type_code == "87273-9"


def test_a_tie_between_two_types_is_unknown():
    result = classify(None, "", "Compte rendu de biologie et compte rendu d'imagerie")
    assert (result.type_code, result.needs_review) == ("unknown", True)


def test_patterns_match_whole_words_only():
    assert classify(None, "", "Maladie de Crohn").type_code == "unknown"  # not "cro", the operative report
    assert classify(None, "", "Microbiologie").type_code == "unknown"  # not "biologie"


def test_hyphens_apostrophes_accents_and_case_are_folded():
    assert fold("COMPTE-RENDU d’Hospitalisation – Œdème, 38°C") == "compte rendu d hospitalisation oedeme 38 c"
    assert classify(None, "", "COMPTE-RENDU D’HOSPITALISATION").type_code == "34112-3"


def test_only_the_first_characters_of_the_text_count():
    late = "x " * (TEXT_LIMIT // 2) + "Compte rendu opératoire. Type d'anesthésie : générale."
    assert classify(None, "", NEUTRAL, None, late).type_code == "unknown"
    assert classify(None, "", NEUTRAL, None, late[TEXT_LIMIT:]).type_code == "34874-8"


def test_content_confidence_grows_with_the_evidence_and_stays_below_the_manifest():
    weak = classify(None, "", NEUTRAL, None, "Hospitalisation du 03/02/2025 au 10/02/2025. Traitement de sortie : aucun.")
    strong = classify(None, "", "Lettre de liaison de sortie", "ldl.pdf", "Lettre de liaison. Traitement de sortie : aucun.")
    assert weak.type_code == strong.type_code == "11490-0"
    assert 0 < weak.confidence < strong.confidence <= 0.85 < classify(None, "lettre de liaison", None).confidence
    assert weak.needs_review and not strong.needs_review


# ---------------------------------------------------------------------------------------------
# The unclassifiable, and robustness
# ---------------------------------------------------------------------------------------------

NEUTRAL_TEXTS = [
    "",
    "Madame, Monsieur, nous vous informons qu'à compter du 1er mars le secrétariat est transféré au 12 rue du Port, "
    "35000 Rennes. Les horaires d'ouverture restent inchangés. Nous vous prions d'agréer nos salutations distinguées.",
    "Page numérisée le 03/03/2025 par le service des archives. Cette page ne comporte aucune information lisible.",
    "Dear Sir or Madam, please note that from 1 March our administrative office moves to 12 Harbour Street. "
    "Opening hours remain unchanged. Kind regards.",
]


@pytest.mark.parametrize("text", NEUTRAL_TEXTS)
def test_a_neutral_document_is_kept_as_95_unknown_and_flagged(text):
    result = classify(None, "", NEUTRAL, "doc-000001.pdf", text)
    assert result == Classification("95", "unknown", "unclassified", 0.0)
    assert result.needs_review


def test_nothing_at_all_is_95_unknown():
    assert classify(None, None, None) == Classification("95", "unknown", "unclassified", 0.0)


def _weird(rng: random.Random) -> str:
    alphabet = [
        "a",
        " ",
        "é",
        "\u0301",
        "\x00",
        "\ud800",
        "\u202e",
        "\ufeff",
        "🚑",
        "医",
        "ß",
        "ǅ",
        "İ",
        "ﬁ",
        "’",
        "-",
        "|",
        "(",
        "\\",
        "\n",
        "compte rendu ",
        "opératoire ",
        "\u200b",
    ]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))


def test_classify_never_raises_whatever_it_is_given():
    rng = random.Random(20260115)
    for _ in range(300):
        fields = [rng.choice([None, "", _weird(rng)]) for _ in range(5)]
        result = classify(*fields)
        assert 0.0 <= result.confidence <= 1.0
        assert result.class_code in set(vocabulary().by_code.values()) | {"95"}
    odd: list[object] = [b"\xff\xfe compte rendu operatoire", 12, 3.5, ["x"], object()]
    for value in odd:
        assert isinstance(classify(value, value, value, value, value), Classification)  # type: ignore[arg-type]
    huge = "Compte rendu de biologie. " + "é" * 5_000_000
    assert classify(None, None, None, None, huge).type_code == "11502-2"


# ---------------------------------------------------------------------------------------------
# needs_content and the tables
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("declared", "expected"), [("11502-2", False), ("Lab report", False), ("", True), (None, True), ("Divers", True)])
def test_needs_content_only_when_the_manifest_does_not_decide(declared, expected):
    assert needs_content(declared) is expected


def test_every_type_has_rules_for_titles_and_texts_with_its_own_class():
    vocab = vocabulary()
    places = {(rule.type_code, rule.where) for rule in rules()}
    for code in vocab.by_code:
        assert {(code, "title"), (code, "text")} <= places, code
    assert all(vocab.by_code[rule.type_code] == rule.class_code for rule in rules())


def test_every_rule_has_an_anchor_so_classification_stays_fast():
    assert [rule.line for rule in rules() if not rule.anchors] == []


def test_a_broken_rules_table_is_reported_with_its_line(tmp_path, monkeypatch):
    broken = tmp_path / "rules.csv"
    broken.write_text("# a comment\ntype_code,class_code,where,pattern,weight,language,note\n11502-2,10,body,biologie,3,fr,\n")
    monkeypatch.setattr(classify_module, "RULES", broken)
    rules.cache_clear()
    try:
        with pytest.raises(ValueError, match="line 3"):
            rules()
    finally:
        monkeypatch.undo()
        rules.cache_clear()
    assert rules()


# ---------------------------------------------------------------------------------------------
# The sample corpus, classified the way the pipeline will
# ---------------------------------------------------------------------------------------------


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def _cda_code(path: Path) -> tuple[str | None, str | None]:
    code = ElementTree.parse(path).getroot().find(f"{HL7}code")
    return (code.get("code"), code.get("codeSystem")) if code is not None else (None, None)


def _pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages[:5])


@pytest.mark.slow  # generates and reads a sample corpus
def test_the_sample_corpus_is_classified_as_expected(tmp_path):
    out = generate_samples(tmp_path / "batch", patients=10, documents=300, seed=5).out
    manifest, expected = _rows(out / "manifest.csv"), _rows(out / "expected.csv")
    declared_hits, declared_total, other_hits, misses = 0, 0, 0, []
    others = 0
    for name, want in expected.items():
        if want["expected_state"] != "indexed":
            continue
        row = manifest[name]
        cda, system = _cda_code(out / name) if name.endswith(".xml") else (None, None)
        text = _pdf_text(out / name) if name.endswith(".pdf") else None
        result = classify(cda, row["document_type"], row["title"], name, text, cda_code_system=system)
        hit = (result.class_code, result.type_code) == (want["class_code"], want["type_code"])
        if cda or row["document_type"]:
            declared_total += 1
            declared_hits += hit
        else:
            others += 1
            other_hits += hit
        if not hit:
            misses.append((name, want["type_code"], result))
    print(f"declared {declared_hits}/{declared_total}, others {other_hits}/{others}")
    for miss in misses:
        print("miss:", *miss)
    assert declared_total > 200 and others >= 10
    assert declared_hits == declared_total
    assert other_hits >= 0.95 * others
