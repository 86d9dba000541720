"""Throwaway GPG keyrings for the tests, made with the real gpg binary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PLAIN_UID = "Backup Key <backup@example.com>"
PROTECTED_UID = "Protected Key <protected@example.com>"
PASSPHRASE = "correct horse battery staple"


def gpg(home: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", *args],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout.decode()


def make_keyring(home: Path, *, protected: bool = True) -> Path:
    """A keyring with a key without passphrase (and one with ``PASSPHRASE``)."""
    home.mkdir(mode=0o700, parents=True)
    # No passphrase caching: a wrong passphrase must fail even after a right one.
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n")
    gpg(home, "--passphrase", "", "--quick-gen-key", PLAIN_UID, "future-default", "default", "never")
    if protected:
        gpg(
            home,
            "--passphrase",
            PASSPHRASE,
            "--quick-gen-key",
            PROTECTED_UID,
            "future-default",
            "default",
            "never",
        )
    return home


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent and dirmngr that gpg started for this keyring."""
    subprocess.run(
        ["gpgconf", "--kill", "all"],
        env={**os.environ, "GNUPGHOME": str(home)},
        check=False,
        timeout=30,
    )
