"""A corpus of hostile documents, generated at test time, and the checks that it is what it claims."""
