"""The clinical texts, one module per kind of document. A builder takes (rng, patient, author,
service date, page count) and returns the document's intro lines and its pages of sections."""
