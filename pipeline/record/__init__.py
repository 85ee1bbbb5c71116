"""What the patient adds to their record besides documents, and the copy of the record (export)."""
