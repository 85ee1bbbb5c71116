"""The metadata index: SQLAlchemy 2 models, sessions, queries, record keys and Alembic migrations.

It imports only the core."""
