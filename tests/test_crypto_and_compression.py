"""Compression and GPG through the whole pipeline, with the real gpg binary and throwaway keys."""

import io
import json
import os
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from dbbackup import crypto
from dbbackup.exceptions import DecryptionError, EncryptionError
from dbbackup.storage import get_storage
from tests import gpg
from tests.helpers import add_known_data, snapshot
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def run(name, *args, **options):
    err = io.StringIO()
    call_command(name, *args, stdout=io.StringIO(), stderr=err, **options)
    return err.getvalue()


def only_backup():
    [name] = get_storage().list_backups(database="default")
    return name


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "gpg"])
def test_every_combination_round_trips(backup_dir, gpg_settings, compression, encrypt):
    add_known_data()
    before = snapshot()
    args = (["--compression", compression] if compression else []) + (["-e"] if encrypt else [])
    run("dbbackup", "-d", "default", *args)
    name = only_backup()
    suffix = {None: "", "gzip": ".gz", "zstd": ".zst"}[compression] + (".gpg" if encrypt else "")
    assert name.endswith(".sqlite3" + suffix)
    head = (backup_dir / name).read_bytes()[:32]
    if encrypt:
        assert head.startswith(b"-----BEGIN PGP MESSAGE-----")
    metadata = json.loads((backup_dir / (name + ".metadata")).read_text())["dbbackup"]
    assert metadata["compression"] == compression
    assert metadata["encrypted"] is encrypt
    Note.objects.all().delete()
    Note.objects.create(title="after the backup")
    run("dbrestore", "-d", "default", "--noinput")  # no -z, no -c: both are recognised
    assert snapshot() == before


def test_z_uses_the_compression_setting(backup_dir, settings):
    settings.DBBACKUP_COMPRESSION = "zstd"
    run("dbbackup", "-d", "default", "-z")
    assert only_backup().endswith(".sqlite3.zst")


def test_gzip_level_is_a_setting(backup_dir, settings):
    add_known_data(count=30)
    sizes = {}
    for level in (1, 9):
        settings.DBBACKUP_GZIP_LEVEL = level
        sizes[level] = (
            run("dbbackup", "-d", "default", "-z", "-o", f"level{level}.gz")
            and (backup_dir / f"level{level}.gz").stat().st_size
        )
    assert sizes[9] < sizes[1]


def test_restore_with_the_passphrase_of_a_protected_key(backup_dir, gpg_settings):
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-z", "-e")
    Note.objects.all().delete()
    run("dbrestore", "-d", "default", "--noinput", "-c", "-p", gpg.PASSPHRASE)
    assert snapshot() == before


@pytest.mark.parametrize("passphrase", [None, "wrong passphrase"], ids=["missing", "wrong"])
def test_a_wrong_or_missing_passphrase_changes_nothing(backup_dir, gpg_settings, passphrase):
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    add_known_data()
    run("dbbackup", "-d", "default", "-e")
    Note.objects.create(title="newer")
    before = snapshot()
    args = ["-p", passphrase] if passphrase else []
    expected = "passphrase given is wrong" if passphrase else "key needs a passphrase: give it with -p"
    with pytest.raises(CommandError, match=f"GPG decryption failed.*{expected}") as info:
        run("dbrestore", "-d", "default", "--noinput", *args)
    if passphrase:
        assert passphrase not in str(info.value)
    assert snapshot() == before


def test_a_backup_for_a_key_we_lack_changes_nothing(backup_dir, gpg_settings, stranger_keyring):
    run("dbbackup", "-d", "default", "-e")
    Note.objects.create(title="newer")
    before = snapshot()
    gpg_settings.DBBACKUP_GPG_HOME = str(stranger_keyring)
    with pytest.raises(CommandError, match="secret key for this backup is not in the keyring"):
        run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before


def test_encrypting_to_an_unknown_recipient_stores_nothing(backup_dir, gpg_settings):
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "nobody@example.com"
    with pytest.raises(
        CommandError, match="GPG encryption failed.*Import the public key of nobody@example.com"
    ):
        run("dbbackup", "-d", "default", "-e")
    assert get_storage().list_directory() == []


def test_interactive_restore_asks_for_the_passphrase(backup_dir, gpg_settings, monkeypatch):
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    add_known_data()
    before = snapshot()
    run("dbbackup", "-d", "default", "-e")
    Note.objects.all().delete()
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or gpg.PASSPHRASE)
    monkeypatch.setattr("builtins.input", lambda question: "y")
    monkeypatch.setattr("sys.stdin", _Terminal())
    run("dbrestore", "-d", "default")
    assert asked == [f"GPG passphrase for {only_backup()} (empty if the key has none): "]
    assert snapshot() == before


def test_tampered_encrypted_backup_without_metadata_is_refused(backup_dir, gpg_settings):
    run("dbbackup", "-d", "default", "-e", "--compression", "gzip")
    name = only_backup()
    (backup_dir / (name + ".metadata")).unlink()
    armored = (backup_dir / name).read_bytes()
    lines = armored.split(b"\n")
    middle = len(lines) // 2
    lines[middle] = lines[middle][:10] + (b"A" if lines[middle][10:11] != b"A" else b"B") + lines[middle][11:]
    (backup_dir / name).write_bytes(b"\n".join(lines))
    Note.objects.create(title="keep")
    before = snapshot()
    with pytest.raises(CommandError, match="GPG decryption failed|not a valid gzip stream"):
        run("dbrestore", "-d", "default", "--noinput")
    assert snapshot() == before


def test_storage_failing_half_way_leaves_nothing(settings, gpg_settings):
    settings.STORAGES = {**settings.STORAGES, "dbbackup": {"BACKEND": "tests.storages.FailingStorage"}}
    add_known_data(count=20)
    for args in ([], ["-z"], ["-e"]):
        with pytest.raises(CommandError, match="OSError: connection reset after"):
            call_command("dbbackup", "-d", "default", "-q", *args)
        assert get_storage().list_directory() == []


def test_verify_only_reads_everything_and_restores_nothing(backup_dir, gpg_settings):
    add_known_data()
    run("dbbackup", "-d", "default", "--compression", "zstd", "-e")
    Note.objects.all().delete()
    before = snapshot()
    err = run("dbrestore", "-d", "default", "--verify-only", "--noinput")
    assert "is readable" in err
    assert "checksum verified" in err
    assert snapshot() == before
    name = only_backup()
    data = bytearray((backup_dir / name).read_bytes())
    data[200] ^= 0x20
    (backup_dir / name).write_bytes(bytes(data))
    with pytest.raises(CommandError, match="does not match the SHA-256"):
        run("dbrestore", "-d", "default", "--verify-only", "--noinput")


def test_gpg_streams_are_not_spooled_and_can_be_abandoned(gpg_settings):
    source = io.BytesIO(os.urandom(8 * 1024 * 1024))
    encrypted = crypto.encrypt(source)
    assert encrypted.read(100).startswith(b"-----BEGIN PGP MESSAGE-----")
    encrypted.close()  # kills gpg; must not hang or leave the thread behind
    assert not encrypted._thread.is_alive()


def test_python_gnupg_missing_names_the_extra(monkeypatch, gpg_settings):
    import builtins

    real_import = builtins.__import__

    def no_gnupg(name, *args, **kwargs):
        if name == "gnupg":
            raise ImportError("no gnupg")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gnupg)
    with pytest.raises(ImportError, match=r'pip install "django-dbbackup-ng\[gpg\]"'):
        crypto.check_can_encrypt()


def test_encryption_and_decryption_errors_are_the_compat_classes():
    from dbbackup import utils

    assert utils.EncryptionError is EncryptionError
    assert utils.DecryptionError is DecryptionError


def test_an_encrypted_restore_with_nobody_to_type_the_passphrase_says_how(
    backup_dir, gpg_settings, monkeypatch
):
    run("dbbackup", "-d", "default", "-e")

    def no_terminal(prompt):
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_terminal)
    monkeypatch.setattr("sys.stdin", _Terminal())
    with pytest.raises(CommandError, match="nobody is there to type its passphrase; give it with -p"):
        run("dbrestore", "-d", "default")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_an_encrypted_restore_without_a_terminal_says_so_without_a_python_warning(backup_dir, gpg_settings):
    from tests.faults.support import run_command

    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    run("dbbackup", "-d", "default", "-e")
    result = run_command("dbrestore", "-d", "default")  # stdin is /dev/null: no terminal
    assert result.returncode == 1
    assert "nobody is there to type its passphrase" in result.stderr
    assert "Warning" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_short_common_word_as_passphrase_does_not_garble_the_message(backup_dir, gpg_settings):
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    run("dbbackup", "-d", "default", "-e")
    with pytest.raises(CommandError, match="The passphrase given is wrong"):
        run("dbrestore", "-d", "default", "--noinput", "-p", "wrong")


def test_gpg_does_not_compress_what_is_already_compressed(backup_dir, gpg_settings, keyring):
    import subprocess

    add_known_data()
    for args, expect_compressed_packet in ((["-e"], True), (["-z", "-e"], False)):
        run("dbbackup", "-d", "default", *args, "-o", f"x{len(args)}.gpg")
        packets = subprocess.run(
            [
                "gpg",
                "--homedir",
                str(keyring),
                "--batch",
                "--list-packets",
                str(backup_dir / f"x{len(args)}.gpg"),
            ],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert (":compressed packet:" in packets) is expect_compressed_packet, args


class _CountingReader(io.BytesIO):
    """Counts how many bytes were read from it; each read takes a little while, like a download."""

    consumed = 0

    def read(self, size=-1):
        time.sleep(0.02)
        data = super().read(size)
        self.consumed += len(data)
        return data


@pytest.mark.parametrize("cause", ["no secret key", "wrong passphrase"])
def test_a_wrong_key_or_passphrase_fails_before_the_backup_is_read(
    gpg_settings, stranger_keyring, keyring, cause
):
    gpg_settings.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    payload = os.urandom(16 * 1024 * 1024)
    stream = crypto.encrypt(io.BytesIO(payload), compressed=True)
    try:
        encrypted = stream.read()
    finally:
        stream.close()
    if cause == "no secret key":
        gpg_settings.DBBACKUP_GPG_HOME = str(stranger_keyring)
    source = _CountingReader(encrypted)
    decrypted = crypto.decrypt(source, "wrong" if cause == "wrong passphrase" else None)
    try:
        with pytest.raises(DecryptionError):
            decrypted.read()
    finally:
        decrypted.close()
    assert source.consumed < len(encrypted) // 2, f"{source.consumed} of {len(encrypted)} bytes read"
