"""What secures the local broker: a local CA and broker certificate, one SCRAM password per principal.

Where those files are and how a client uses them is the CLI's to read
(`modelfleet_cli.local_home.kafka.KafkaCredentials`, private keys and passwords ``0600``, their
folders ``0700``); making them is this module's. They are made on the first start and kept: the
broker's SCRAM users are created from them when its storage is formatted.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelfleet_cli.local_home.kafka import SCRAM_MECHANISM, KafkaCredentials
from modelfleet_common.private_files import write_private

#: Subject of the broker's certificate; `User:CN=<this>` is the controller listener's principal.
BROKER_CN = "modelfleet-local-broker"
_VALID_DAYS = 3650


class LocalSecurity(KafkaCredentials):
    """The local broker's TLS material and credentials, made when missing."""

    def ensure(self) -> None:
        """Make whatever is missing: the CA and broker certificate, then each principal's password."""
        for folder in (self.tls_dir, self.credentials_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        if not (self.ca_file.is_file() and self.broker_pem.is_file()):
            _write_tls(self.tls_dir)
        for principal in self.principals:
            path = self.password_file(principal)
            if not path.is_file():
                write_private(path, secrets.token_urlsafe(32) + "\n")

    def scram_arguments(self) -> list[str]:
        """`StorageTool format` arguments that create every principal's SCRAM user."""
        arguments: list[str] = []
        for principal in self.principals:
            arguments += [
                "--add-scram",
                f"{SCRAM_MECHANISM}=[name={principal},password={self.password(principal)}]",
            ]
        return arguments


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_tls(folder: Path) -> None:
    """A CA and a broker certificate it signed, for 127.0.0.1 and localhost (ECDSA P-256)."""
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=_VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("modelfleet local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(BROKER_CN))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Server towards clients; client towards its own controller listener (mutual TLS).
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    write_private(folder / "ca.key", ca_key.private_bytes(pem, pkcs8, plain))
    # Kafka's PEM key store: an unencrypted PKCS#8 key followed by the certificate chain.
    write_private(
        folder / "broker.pem",
        broker_key.private_bytes(pem, pkcs8, plain)
        + broker_cert.public_bytes(pem)
        + ca_cert.public_bytes(pem),
    )
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
