"""Connector exceptions at their django-dbbackup import path (see :mod:`dbbackup.exceptions`)."""

from dbbackup.exceptions import CommandConnectorError, ConnectorError, DumpError, RestoreError

__all__ = ["CommandConnectorError", "ConnectorError", "DumpError", "RestoreError"]
