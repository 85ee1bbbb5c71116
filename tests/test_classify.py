"""Classification order: the document's own code, the manifest, the title, else 95/unknown."""

from pipeline.workers.classify import classify


def test_the_cda_code_wins_over_the_manifest():
    result = classify("11502-2", "57833-6", "Ordonnance")
    assert (result.class_code, result.type_code, result.rule) == ("10", "11502-2", "cda_code")


def test_a_manifest_loinc_code_gives_class_and_type():
    assert (classify(None, "57833-6", None).class_code, classify(None, "57833-6", None).type_code) == ("42", "57833-6")


def test_a_manifest_common_name_in_french_is_understood_without_accents():
    result = classify(None, "Compte rendu operatoire", None)
    assert (result.type_code, result.rule) == ("34874-8", "manifest_name")


def test_the_title_decides_when_the_manifest_says_nothing():
    result = classify(None, "", "Compte rendu de biologie du 3 mars")
    assert (result.type_code, result.rule) == ("11502-2", "title")


def test_the_unclassifiable_is_kept_as_95_unknown_and_flagged():
    result = classify(None, "", "Divers")
    assert (result.class_code, result.type_code, result.needs_review) == ("95", "unknown", True)
