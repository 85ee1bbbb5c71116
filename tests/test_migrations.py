"""The same Alembic migrations build the models' schema on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pipeline.index.db import make_engine, upgrade
from pipeline.index.models import Base


def test_migrations_create_exactly_the_models_schema(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_upgrading_twice_is_harmless(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)
    engine.dispose()
