"""Settings for a management command run in a child process by the fault tests.

The parent test serialises the settings that matter (``DATABASES`` with the test database
names, ``STORAGES``, ``MEDIA_ROOT`` and every ``DBBACKUP_*`` setting) into the environment
variable ``DBBACKUP_CHILD_SETTINGS``; this module starts from the test settings and applies them,
so the child works on the very databases and storages the test set up.
"""

import json
import os

from tests.settings import *  # noqa: F403

_OVERRIDES = json.loads(os.environ["DBBACKUP_CHILD_SETTINGS"])
globals().update(_OVERRIDES)
# Django 6.1 refuses the old EMAIL_* settings beside MAILERS: a test that sets them wants them.
if any(name.startswith("EMAIL_") for name in _OVERRIDES) and "MAILERS" not in _OVERRIDES:
    globals().pop("MAILERS", None)
