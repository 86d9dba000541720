"""dbbackup: back up and restore a Django project's databases and media.

A drop-in replacement for django-dbbackup 5.x: the same settings, commands, signals,
connector paths and file formats, with streamed, verified backups underneath.
"""

import logging

__version__ = "0.1.0.dev0"

# A library's logger stays silent unless the project configures it (LOGGING), instead of
# falling back to Python's last-resort handler and printing every error twice.
logging.getLogger("dbbackup").addHandler(logging.NullHandler())
