"""Alembic migrations for the bot's schema; run at start by `bot.schema.migrate()`."""
