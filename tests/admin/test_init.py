"""mailstack init writes a complete configuration that loads and a certificate clients can verify."""

import ipaddress

from cryptography import x509

from mailstack.config import maincf, mastercf
from tests.conftest import run_cli


def test_init_writes_everything(config_dir):
    """main.cf, master.cf, passwd, aliases, virtual, TLS files and directories exist and load."""
    for name in ("main.cf", "master.cf", "passwd", "aliases", "virtual",
                 "tls/ca.pem", "tls/server.pem", "tls/server.key"):
        assert (config_dir / name).is_file(), name
    config = maincf.load(str(config_dir))
    assert config.warnings == []
    assert config["myhostname"] == "mail.example.test"
    for sub in ("incoming", "active", "deferred", "hold", "corrupt", "maildrop"):
        assert (config_dir / "queue" / sub).is_dir()
    entries = {e.name: e for e in mastercf.load(str(config_dir))}
    assert entries["smtp"].endpoint == "tcp:2525"
    assert entries["imaps"].endpoint == "ssl:9930"
    for entry in entries.values():
        if entry.overrides:
            config.with_overrides(entry.overrides)
    assert oct((config_dir / "tls/server.key").stat().st_mode & 0o777) == "0o600"


def test_init_compiles_alias_and_virtual_tables(config_dir):
    """The hash tables main.cf names are built, so a fresh server starts without table warnings."""
    from mailstack.tables.hash import read_index
    for name in ("aliases.db", "virtual.db"):
        assert (config_dir / name).is_file(), name
    aliases = read_index(str(config_dir / "aliases.db"))
    assert aliases["postmaster"] == "root"
    virtual = read_index(str(config_dir / "virtual.db"))
    assert virtual["postmaster@example.test"] == "postmaster@localhost"
    assert virtual["abuse@example.test"] == "postmaster@localhost"


def test_postmaster_option_routes_role_addresses(tmp_path):
    """init --postmaster sends postmaster@, abuse@ and the local postmaster alias to that address."""
    from mailstack.tables.hash import read_index
    status, _out, err = run_cli("--config", tmp_path, "init", "--ports", "dev", "--domain", "example.test",
                                "--postmaster", "admin@example.test")
    assert status == 0, err
    assert read_index(str(tmp_path / "virtual.db"))["postmaster@example.test"] == "admin@example.test"
    assert read_index(str(tmp_path / "aliases.db"))["postmaster"] == "admin@example.test"


def test_certificate_names_and_issuer(config_dir):
    """The server certificate is signed by the local CA and names host, localhost and 127.0.0.1."""
    ca = x509.load_pem_x509_certificate((config_dir / "tls/ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((config_dir / "tls/server.pem").read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mail.example.test", "localhost"}
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_init_refuses_to_overwrite(config_dir):
    """A second init without --force leaves the configuration alone."""
    status, _, err = run_cli("-c", config_dir, "init")
    assert status == 1
    assert "exists; use --force" in err


def test_standard_ports(tmp_path):
    """Without --ports dev, the standard ports are used."""
    status, _, _ = run_cli("-c", tmp_path / "std", "init", "--domain", "example.org")
    assert status == 0
    entries = {e.name: e.endpoint for e in mastercf.load(str(tmp_path / "std"))}
    assert entries["smtp"] == "tcp:25" and entries["submission"] == "tcp:587" and entries["pop3s"] == "ssl:995"
