"""Settings for a management command run in a child process by the fault tests.

The parent test serialises the settings that matter (``DATABASES`` with the test database
names, ``STORAGES``, ``MEDIA_ROOT`` and every ``DBBACKUP_*`` setting) into the environment
variable ``DBBACKUP_CHILD_SETTINGS``; this module starts from the test settings and applies them,
so the child works on the very databases and storages the test set up.
"""

import json
import os

from tests.settings import *  # noqa: F403

globals().update(json.loads(os.environ["DBBACKUP_CHILD_SETTINGS"]))
