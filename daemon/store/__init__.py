"""The database: every SQL statement (database.py), its schema versions, the audit chain, the outbox budget."""
