"""Jinja2 templates shipped with the bot (a package so setuptools installs the `*.j2` files)."""
