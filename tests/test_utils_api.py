"""``dbbackup.utils``: the helpers django-dbbackup users call keep their signatures and behaviour."""

import gzip
import io
import subprocess
from datetime import datetime, timezone

import pytest
from django.core.files.base import ContentFile

from dbbackup import utils
from tests import gpg


def test_bytes_to_str_uses_binary_units_and_pythons_rounding():
    assert utils.bytes_to_str(115000) == "112.3 KiB"
    assert utils.bytes_to_str(2**31) == "2.0 GiB"
    assert utils.bytes_to_str(1024) == "1.0 KiB"
    assert utils.bytes_to_str(3 * 1024**5) == "3.0 PiB"
    assert utils.bytes_to_str(500) == "500.0 B"
    assert utils.bytes_to_str(byte_val=1.01, decimals=0) == "1 B"
    assert utils.bytes_to_str(1.01, decimals=2) == "1.01 B"
    assert utils.bytes_to_str(0) == "0 B"


def test_handle_size_reads_size_or_seeks_to_the_end():
    assert utils.handle_size(ContentFile(b"x" * 1024)) == "1.0 KiB"
    assert utils.handle_size(io.BytesIO(b"x" * 115000)) == "112.3 KiB"


def test_compress_file_gives_gzip_and_the_name_with_gz(tmp_path):
    data = b"CREATE TABLE t (x int);\n" * 5000
    source = io.BytesIO(data)
    source.read(10)  # compress_file starts from the beginning whatever the position
    compressed, name = utils.compress_file(source, "default-host-2026-01-01-000000.dump")
    assert not source.closed  # the caller's file stays the caller's
    assert name == "default-host-2026-01-01-000000.dump.gz"
    compressed.seek(0)
    raw = compressed.read()
    assert gzip.decompress(raw) == data
    (tmp_path / name).write_bytes(raw)
    assert (
        subprocess.run(["gzip", "-dc", str(tmp_path / name)], capture_output=True, check=True).stdout == data
    )
    restored, restored_name = utils.uncompress_file(compressed, f"some/dir/{name}")
    assert restored_name == "default-host-2026-01-01-000000.dump"
    restored.seek(0)
    assert restored.read() == data


@pytest.fixture
def plain_key(gpg_settings):
    return gpg_settings


def test_encrypt_file_output_decrypts_with_gpg_and_unencrypt_file_reverses_it(tmp_path, plain_key, keyring):
    data = b"secret rows \x00\xff" * 1000
    path = tmp_path / "db.dump"
    path.write_bytes(data)
    handle = open(path, "rb")  # noqa: SIM115 - encrypt_file closes it, as upstream's does
    encrypted, name = utils.encrypt_file(handle, "db.dump")
    assert name == "db.dump.gpg"
    assert handle.closed
    encrypted.seek(0)
    armoured = encrypted.read()
    assert armoured.startswith(b"-----BEGIN PGP MESSAGE-----")
    out = subprocess.run(
        ["gpg", "--homedir", str(keyring), "--batch", "--decrypt"],
        input=armoured,
        capture_output=True,
        check=True,
    ).stdout
    assert out == data
    decrypted, plain_name = utils.unencrypt_file(encrypted, f"backups/{name}", passphrase=None)
    assert plain_name == "db.dump"
    decrypted.seek(0)
    assert decrypted.read() == data


def test_encrypt_file_refuses_text_input_and_reports_failures(tmp_path, plain_key):
    path = tmp_path / "db.dump"
    path.write_text("x")
    with open(path) as text, pytest.raises(ValueError, match="binary mode"):
        utils.encrypt_file(text, "db.dump")
    plain_key.DBBACKUP_GPG_RECIPIENT = "nobody@example.com"
    with pytest.raises(utils.EncryptionError):
        utils.encrypt_file(io.BytesIO(b"data"), "db.dump")


def test_unencrypt_file_with_a_wrong_passphrase_raises_decryption_error(plain_key):
    plain_key.DBBACKUP_GPG_RECIPIENT = "protected@example.com"
    encrypted, _ = utils.encrypt_file(io.BytesIO(b"data"), "db.dump")
    with pytest.raises(utils.DecryptionError):
        utils.unencrypt_file(encrypted, "db.dump.gpg", passphrase="wrong")
    decrypted, _ = utils.unencrypt_file(encrypted, "db.dump.gpg", passphrase=gpg.PASSPHRASE)
    decrypted.seek(0)
    assert decrypted.read() == b"data"


def test_create_spooled_temporary_file_copies_a_path_or_a_file_object(tmp_path, settings):
    settings.DBBACKUP_TMP_FILE_MAX_SIZE = 10
    settings.DBBACKUP_TMP_DIR = str(tmp_path)
    path = tmp_path / "in.bin"
    path.write_bytes(b"0123456789abcdef")
    for spool in (
        utils.create_spooled_temporary_file(filepath=str(path)),
        utils.create_spooled_temporary_file(fileobj=io.BytesIO(b"0123456789abcdef")),
    ):
        assert spool.tell() == 16  # left at the end, as upstream's
        spool.seek(0)
        assert spool.read() == b"0123456789abcdef"
        assert spool._rolled  # beyond DBBACKUP_TMP_FILE_MAX_SIZE: on disk
    assert utils.create_spooled_temporary_file().read() == b""


def test_timestamp_writes_local_time_with_the_date_format(settings):
    settings.TIME_ZONE = "Europe/Paris"
    assert utils.timestamp(datetime(2026, 7, 1, 10, 0, 0, tzinfo=timezone.utc)) == "2026-07-01-120000"
    assert utils.timestamp(datetime(2026, 7, 1, 10, 0, 0)) == "2026-07-01-100000"
    settings.DBBACKUP_DATE_FORMAT = "%Y%m%d"
    assert utils.timestamp(datetime(2026, 7, 1, 10, 0, 0)) == "20260701"


def test_mail_admins_sends_to_dbbackup_admins_with_the_prefix_and_html(settings, mailoutbox):
    utils.mail_admins("nobody to tell", "body")
    assert mailoutbox == []
    settings.DBBACKUP_ADMINS = [("Ops", "ops@example.com"), "dev@example.com"]
    settings.DBBACKUP_SERVER_EMAIL = "backup@example.com"
    utils.mail_admins("it failed", "plain body", html_message="<p>html body</p>")
    [mail] = mailoutbox
    assert mail.subject == "[dbbackup] it failed"
    assert mail.to == ["ops@example.com", "dev@example.com"]
    assert mail.from_email == "backup@example.com"
    assert mail.body == "plain body"
    assert mail.alternatives[0][0] == "<p>html body</p>"


def test_email_uncaught_exception_mails_and_reraises(settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]

    @utils.email_uncaught_exception
    def handle(value):
        if value == "boom":
            raise RuntimeError("the backup broke")
        return value

    assert handle("fine") == "fine"
    assert mailoutbox == []
    with pytest.raises(RuntimeError, match="the backup broke"):
        handle("boom")
    [mail] = mailoutbox
    assert "the backup broke" in mail.subject
    assert "Traceback" in mail.body
    settings.DBBACKUP_SEND_EMAIL = False
    with pytest.raises(RuntimeError):
        handle("boom")
    assert len(mailoutbox) == 1


def add_owner(metadata):
    return {"owner": "ops", "seen_engine": metadata["engine"]}


def refuse_tests(metadata):
    return None if metadata.get("owner") is None else metadata["owner"] != "tests"


def test_user_metadata_hooks(settings):
    assert utils.get_user_metadata({"engine": "x"}) == {}
    assert utils.validate_user_metadata({"engine": "x"}) is True
    settings.DBBACKUP_BACKUP_METADATA_SETTER = f"{__name__}.add_owner"
    settings.DBBACKUP_RESTORE_METADATA_VALIDATOR = f"{__name__}.refuse_tests"
    assert utils.get_user_metadata({"engine": "x"}) == {"owner": "ops", "seen_engine": "x"}
    assert utils.validate_user_metadata({"owner": "ops"}) is True
    assert utils.validate_user_metadata({"owner": "tests"}) is False
    assert utils.validate_user_metadata({}) is None


UPSTREAM_NAMES = """
    filename_generate filename_to_date filename_to_datestring datefmt_to_regex encrypt_file
    unencrypt_file compress_file uncompress_file create_spooled_temporary_file handle_size
    bytes_to_str mail_admins email_uncaught_exception timestamp get_user_metadata
    validate_user_metadata EncryptionError DecryptionError
"""


@pytest.mark.parametrize("name", UPSTREAM_NAMES.split())
def test_every_upstream_name_is_importable(name):
    assert callable(getattr(utils, name))
