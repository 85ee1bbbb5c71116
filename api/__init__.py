"""The HTTP API (FastAPI). Routes arrive with the consented-reads issue."""
