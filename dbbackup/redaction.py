"""Cutting secrets out of text: messages, logs, e-mails and the command lines shown in them.

A secret is replaced only where it stands as a whole value, always by the same eight asterisks,
so that redaction never reveals a secret's length, position or content.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Iterable, Sequence

REDACTED = "********"


#: Secrets at least this long are cut out wherever they appear, even inside a longer word:
#: such a string inside ordinary text is no accident, and hiding it reveals nothing the reader
#: could not see without the secret. Shorter ones are cut out only as whole values.
ANYWHERE_FROM_LENGTH = 8


def _secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern for every secret, and the forms it takes once quoted for a shell or a URL.

    Longer secrets come first, so a secret that is part of another never cuts the longer one
    in pieces. A short secret (under :data:`ANYWHERE_FROM_LENGTH` characters) matches only as a
    whole token: not inside a longer word (``x`` in ``example``), and not as one part of a
    dotted or dashed word (``pass`` in ``probe-pass@example.com``), where redacting would show
    where, and therefore what, the secret is. A token is bounded by the start or end of the
    text, white space, quotes, ``=``, ``:``, ``@``, ``/`` and other punctuation, which is how
    secrets appear in argv (``--password=...``), environment dumps (``PGPASSWORD=...``), URLs
    (``user:pass@host``) and tools' messages (``for user "..."``); a ``.`` or ``-`` bounds it
    unless a letter or digit follows (before) it on the other side. A long secret matches
    anywhere (``hunter2-db-password.dump`` loses its first part).
    """
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= {secret, shlex.quote(secret), urllib.parse.quote(secret, safe="")}
    if not forms:
        return None
    ordered = sorted(forms, key=len, reverse=True)
    whole = [re.escape(form) for form in ordered if len(form) < ANYWHERE_FROM_LENGTH]
    anywhere = [re.escape(form) for form in ordered if len(form) >= ANYWHERE_FROM_LENGTH]
    alternatives = []
    if anywhere:
        alternatives.append(f"(?:{'|'.join(anywhere)})")
    if whole:
        alternatives.append(rf"(?<!\w)(?<!\w[.\-])(?:{'|'.join(whole)})(?!\w)(?![.\-]\w)")
    return re.compile("|".join(alternatives))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every secret (see :func:`_secret_pattern`) replaced by ``********``.

    The replacement is always the same eight asterisks, whatever the secret's length.
    """
    pattern = _secret_pattern(secrets)
    return pattern.sub(REDACTED, text) if pattern else text


def describe(argv: Sequence[str], secrets: Iterable[str] = ()) -> str:
    """A printable, redacted rendering of ``argv`` for messages and logs."""
    secrets = list(secrets)
    return redact(shlex.join(redact(arg, secrets) for arg in argv), secrets)
