"""Make the certificates and keys a local control plane needs.

One throwaway CA signs the API server's serving certificate and the client
certificates of the admin, the controller-manager and the scheduler; a
separate key pair signs ServiceAccount tokens. ECDSA P-256 everywhere: it is
generated in milliseconds, which matters for a fixture started on every test
session.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)

SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of every PEM file that :func:`generate` wrote."""

    ca: CertPair
    serving: CertPair
    admin: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    kubelet_client: CertPair
    service_account_key: Path
    service_account_pub: Path


def first_service_ip(service_cidr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The `kubernetes` Service's ClusterIP: the first host of the service range."""
    return next(ipaddress.ip_network(service_cidr).hosts())


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    # Backdate a little so a clock skew of seconds never makes a cert "not yet valid".
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
    )


class _Ca:
    def __init__(self, common_name: str) -> None:
        self.key = _new_key()
        self.name = _name(common_name)
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @classmethod
    def load(cls, pair: CertPair) -> _Ca:
        """The CA that :func:`generate` wrote, to sign more certificates later (a node's)."""
        ca = cls.__new__(cls)
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        ca.key = key
        ca.cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        ca.name = ca.cert.subject
        return ca

    def issue(
        self,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        server_names: tuple[str, ...] = (),
        server_ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _new_key()
        usages = [ExtendedKeyUsageOID.SERVER_AUTH if server_names or server_ips else ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            _builder(_name(common_name, organizations), self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if server_names or server_ips:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            sans += [x509.IPAddress(ip) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _save(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, directory: Path, stem: str) -> CertPair:
    pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


def issue(
    directory: Path,
    stem: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    server_ips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (),
    into: Path | None = None,
) -> CertPair:
    """Sign one more certificate with the CA that :func:`generate` wrote into ``directory``."""
    ca = _Ca.load(CertPair(directory / "ca.crt", directory / "ca.key"))
    cert, key = ca.issue(
        common_name, organizations=organizations, server_names=server_names, server_ips=server_ips
    )
    (into or directory).mkdir(parents=True, exist_ok=True)
    return _save(cert, key, into or directory, stem)


def generate(
    directory: Path,
    service_cidr: str = "10.96.0.0/16",
    node_address: ipaddress.IPv4Address | None = None,
) -> Pki:
    """Write a fresh CA, serving/client certificates and the SA key pair into ``directory``.

    ``node_address``: the address the API server also listens on for a real node's pods and kubelet.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Ca("serveplane-local-ca")
    ca_pair = CertPair(directory / "ca.crt", directory / "ca.key")
    ca_pair.cert.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca.key, ca_pair.key)

    serving = _save(
        *ca.issue(
            "kube-apiserver",
            server_names=SERVING_DNS_NAMES,
            server_ips=(
                ipaddress.ip_address("127.0.0.1"),
                first_service_ip(service_cidr),
                *((node_address,) if node_address else ()),
            ),
        ),
        directory,
        "apiserver",
    )
    # The controller-manager and scheduler get the identities the API server's
    # bootstrap RBAC already grants, so they run with least privilege, not as admin.
    admin = _save(*ca.issue("admin", organizations=("system:masters",)), directory, "admin")
    cm = _save(*ca.issue("system:kube-controller-manager"), directory, "controller-manager")
    sched = _save(*ca.issue("system:kube-scheduler"), directory, "scheduler")
    # What the API server shows a kubelet for logs, exec and port-forward; the kubelet asks the API server
    # (webhook authorization) whether this identity may, and system:masters may.
    kubelet_client = _save(
        *ca.issue("kube-apiserver-kubelet-client", organizations=("system:masters",)), directory, "kubelet-client"
    )

    sa_key = _new_key()
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    _write_key(sa_key, sa_key_path)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Pki(ca_pair, serving, admin, cm, sched, kubelet_client, sa_key_path, sa_pub_path)


def load(directory: Path) -> Pki:
    """The :class:`Pki` that :func:`generate` wrote earlier into ``directory``."""
    pair = lambda stem: CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")  # noqa: E731
    return Pki(
        pair("ca"), pair("apiserver"), pair("admin"), pair("controller-manager"), pair("scheduler"),
        pair("kubelet-client"), directory / "sa.key", directory / "sa.pub",
    )
