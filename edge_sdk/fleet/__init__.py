"""The fleet side: collector, storage (SQLite/PostgreSQL), alert rules, views."""
