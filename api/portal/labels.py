"""Names shown for codes (document classes, actions, reasons), as gettext message ids: the templates translate them."""

from __future__ import annotations


def N_(message: str) -> str:
    """Marks a message for extraction (babel.cfg); translated where it is shown."""
    return message


# docs/domain.md, "Document classes and types".
CLASS_LABELS = {
    "10": N_("Compte rendu"),
    "11": N_("Synthèse"),
    "31": N_("Imagerie médicale"),
    "42": N_("Prescription"),
    "43": N_("Dispensation"),
    "44": N_("Plan de soins, protocole"),
    "45": N_("Traitement administré"),
    "52": N_("Certificat, déclaration"),
    "60": N_("Données de remboursement"),
    "90": N_("Ajouté par le patient"),
    "95": N_("Administratif"),
}

ACTION_LABELS = {
    "list": N_("a consulté la liste des documents"),
    "read_metadata": N_("a consulté la fiche d'un document"),
    "read_content": N_("a lu un document"),
    "mask": N_("a masqué un document"),
    "unmask": N_("a démasqué un document"),
    "authorize_professional": N_("a autorisé un professionnel"),
    "block_professional": N_("a bloqué un professionnel"),
    "set_attending_physician": N_("a choisi le médecin traitant"),
    "oppose_emergency": N_("a changé l'opposition à l'accès d'urgence"),
    "close_record": N_("a fermé le dossier"),
    "export": N_("a téléchargé une copie du dossier"),
    "set_notifications": N_("a changé les notifications"),
    "read_notifications": N_("a consulté les notifications"),
    "hide_from_representatives": N_("a caché un document aux représentants légaux"),
    "show_to_representatives": N_("a montré un document aux représentants légaux"),
    "read_care_history": N_("a consulté l'historique des soins"),
    "read_access_log": N_("a consulté l'historique des accès"),
    "emergency_read": N_("accès d'urgence (bris de glace)"),
    "deposit": N_("a déposé un document"),
    "lookup": N_("a recherché le dossier par INS"),
    "read_care_team": N_("a consulté l'équipe de soins"),
    "declare_consent": N_("a déclaré votre consentement à son accès"),
    "revoke_consent": N_("a retiré un consentement déclaré"),
}

# Why a request was refused, in the words shown to the visitor (only where the API tells the reason too).
REASON_LABELS = {
    "not_found": N_("Introuvable."),
    "csrf_failed": N_("Le formulaire a expiré ou ne vient pas de ce site. Rechargez la page et recommencez."),
    "record_closed": N_("Ce dossier est fermé."),
    "record_opposed": N_("Le patient s'est opposé à la création de ce dossier."),
    "blocked": N_("Le patient vous a bloqué : vous ne pouvez pas lire ce dossier."),
    "not_in_care_team": N_("Vous ne faites pas partie de l'équipe de soins de ce patient."),
    "no_consent": N_("Le patient n'a pas donné son consentement."),
    "matrix_forbids": N_("Votre profession ne permet pas de lire ce document."),
    "masked": N_("Ce document est masqué par le patient."),
    "emergency_opposed": N_("Le patient s'est opposé à l'accès d'urgence."),
    "emergency_requires_reason": N_("L'accès d'urgence exige un motif."),
    "not_allowed": N_("Action non autorisée."),
    "sign_in_failed": N_("La connexion a échoué. Recommencez."),
    "invalid_professional": N_("L'identifiant du professionnel (RPPS) n'est pas valide."),
    "invalid_address": N_("L'adresse e-mail ou le numéro de téléphone n'est pas valide (téléphone au format +33612345678)."),
    "forbidden_party": N_("Action non autorisée."),
    "administrative_staff": N_("Action non autorisée."),
}

KIND_LABELS = {
    "source": N_("Source"),
    "patient": N_("Patient"),
    "legal_representative": N_("Représentant légal"),
    "professional": N_("Professionnel de santé"),
    "emergency_regulator": N_("Régulation (SAMU)"),
    "occupational_physician": N_("Médecin du travail"),
}

# How a professional (or a facility) stands to the record (pipeline/index/states.py Relation).
RELATION_LABELS = {
    "authorized": N_("autorisé par vous"),
    "blocked": N_("bloqué"),
    "declared_consent": N_("consentement déclaré par le professionnel"),
    "facility": N_("établissement autorisé pour un séjour"),
    "occupational_consent": N_("médecin du travail, avec votre consentement"),
    "attending_proposal": N_("proposé comme médecin traitant"),
}

# The types a patient gives their own documents (class 90, pipeline/documents/contributed.py).
PATIENT_TYPE_LABELS = {
    "DOCPAT01": N_("Document personnel (DOCPAT01)"),
    "DOCPAT02": N_("Document personnel (DOCPAT02)"),
    "DOCPAT03": N_("Document personnel (DOCPAT03)"),
    "DOCPAT04": N_("Document personnel (DOCPAT04)"),
    "DOCPAT05": N_("Document personnel (DOCPAT05)"),
    "DOCPAT06": N_("Document personnel (DOCPAT06)"),
    "EXPPAT_3": N_("Directives anticipées"),
}

# A version's status (pipeline/index/states.py DocumentStatus).
STATUS_LABELS = {
    "current": N_("Version en vigueur"),
    "superseded": N_("Remplacée par une version plus récente"),
    "entered-in-error": N_("Retirée (envoyée par erreur)"),
}

# Where one document of the patient's upload stands (pipeline/index/states.py ItemState).
ITEM_STATE_LABELS = {
    "queued": N_("En file d'attente"),
    "processing": N_("En cours de traitement"),
    "indexed": N_("Ajouté à votre dossier"),
    "rejected": N_("Refusé"),
}

# Why the portal's upload form refused a file (the API's problem codes).
UPLOAD_ERROR_LABELS = {
    "payload_too_large": N_("Le fichier est trop volumineux."),
    "metadata_invalid": N_("Le titre et le type du document sont obligatoires."),
    "multipart_invalid": N_("Choisissez un fichier à envoyer."),
    "queue_full": N_("Trop d'envois en attente : réessayez dans quelques minutes."),
    "service_unavailable": N_("Le service est momentanément indisponible : réessayez."),
}
