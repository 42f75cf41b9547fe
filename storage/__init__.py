"""The database layer: models, migrations, the blob store and the store-first inbound rows."""

MAIN_DIVISION = "main"
"""The division of a config's top-level ``[mailbox]`` and ``[staff]``, and of every row
written before there were divisions.  Defined here, not in ``models``, so that reading the
config does not load SQLAlchemy (``warrantyd run`` starts its worker before that)."""
