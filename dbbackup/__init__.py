"""dbbackup: back up and restore a Django project's databases and media.

A drop-in replacement for django-dbbackup 5.x: the same settings, commands, signals,
connector paths and file formats, with streamed, verified backups underneath.
"""

__version__ = "0.1.0.dev0"
