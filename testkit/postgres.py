"""The machine's PostgreSQL (127.0.0.1:5432, user postgres, trust) for the production profile's
tests: fresh databases and plain queries."""

from __future__ import annotations

PG = "postgresql://postgres@127.0.0.1:5432"
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the pinned driver is psycopg2.
SA_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"


def sql(db: str, query: str) -> list[tuple]:
    """One statement in autocommit (CREATE/DROP DATABASE included); its rows, if any."""
    import psycopg2

    con = psycopg2.connect(f"{PG}/{db}")
    con.autocommit = True
    try:
        cur = con.cursor()
        cur.execute(query)
        return cur.fetchall() if cur.description else []
    finally:
        con.close()
