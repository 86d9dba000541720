"""Helpers that make and read the golden backups of django-dbbackup 5.4 (see make_fixtures.py)."""
