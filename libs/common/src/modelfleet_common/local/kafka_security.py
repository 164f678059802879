"""What secures the local broker: a local CA and broker certificate, one SCRAM password per principal.

Files under ``<home>/kafka`` (private keys and passwords ``0600``, their folders ``0700``):

- ``tls/ca.pem`` (the CA certificate clients verify the broker with), ``tls/ca.key``,
- ``tls/broker.pem`` (the broker's key and certificate; also its client certificate towards its
  own controller listener, which accepts mutual TLS only),
- ``credentials/<principal>.password`` for ``admin`` (a super user) and every principal of the
  topic catalog (each service and ``cli``).

They are made on the first start and kept: the broker's SCRAM users are created from them when
its storage is formatted. `client_environment` gives a process the `FLEET_KAFKA_*` settings of one
principal, with the password as a file (it never goes into the environment).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelfleet_common.private_files import write_private
from modelfleet_contracts.topics import PRINCIPALS

#: The local broker's super user: provisions topics and ACLs, nothing else uses it.
ADMIN = "admin"
#: Subject of the broker's certificate; `User:CN=<this>` is the controller listener's principal.
BROKER_CN = "modelfleet-local-broker"
SCRAM_MECHANISM = "SCRAM-SHA-512"
_VALID_DAYS = 3650


@dataclass(frozen=True)
class LocalSecurity:
    """Paths of the local broker's TLS material and credentials."""

    root: Path

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def credentials_dir(self) -> Path:
        return self.root / "credentials"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def broker_pem(self) -> Path:
        return self.tls_dir / "broker.pem"

    def password_file(self, principal: str) -> Path:
        return self.credentials_dir / f"{principal}.password"

    def password(self, principal: str) -> str:
        return self.password_file(principal).read_text(encoding="utf-8").strip()

    @property
    def principals(self) -> tuple[str, ...]:
        return (ADMIN, *PRINCIPALS)

    def is_complete(self) -> bool:
        """Whether the CA, the broker certificate and every principal's password exist."""
        files = [self.ca_file, self.broker_pem, *(self.password_file(p) for p in self.principals)]
        return all(path.is_file() for path in files)

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

    def client_environment(self, principal: str, bootstrap: str) -> dict[str, str]:
        """The `FLEET_KAFKA_*` settings that connect as `principal` (SASL_SSL, SCRAM-SHA-512)."""
        if principal not in self.principals:
            raise ValueError(f"the local broker has no principal {principal!r}: {list(self.principals)}")
        return {
            "FLEET_KAFKA_BOOTSTRAP": bootstrap,
            "FLEET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FLEET_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "FLEET_KAFKA_SASL_USERNAME": principal,
            "FLEET_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(principal)),
            "FLEET_KAFKA_SSL_CAFILE": str(self.ca_file),
        }


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
