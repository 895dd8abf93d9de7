"""A real Kubernetes control plane for the tests: etcd and kube-apiserver on loopback, nothing else.

kmock stores objects; it compiles no structural schema, runs no CEL rule, enforces no RBAC and issues
no service-account tokens. These tests need the real thing, so ``start_control_plane`` runs the
``etcd`` and ``kube-apiserver`` binaries that ``make kube-binaries`` builds from the pinned Go module in
``tests/kube/gobuild`` (into ``.cache/kube/bin``), with what a cluster's apiserver has:

- TLS with a CA and a serving certificate made here (``cryptography``), for 127.0.0.1 and localhost;
- RBAC authorization, a static token file with one admin (group ``system:masters``);
- service-account signing keys and an issuer, so TokenRequest (``kubectl create token``) works and a
  test can act as the operator's own ServiceAccount, bound by the manifests' RBAC;
- free ports, a temporary data directory, etcd without fsync (a test cluster loses nothing it needs).

There is no controller-manager or scheduler: no pod runs, no ``default`` ServiceAccount appears in a
new namespace, and a deleted namespace is never finalized (its deletion hangs), so the tests create
namespaces and never delete them. Each process runs in its own process group, so stopping kills
everything it started, also when a test or the start itself fails; and the kernel kills both if the
test process itself is killed outright (SIGKILL, where no cleanup runs).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
# Where `make kube-binaries` puts them; KUBE_BIN_DIR overrides it, here as in tests/kube/build.sh.
BIN_DIR = Path(os.environ.get("KUBE_BIN_DIR") or ROOT / ".cache" / "kube" / "bin")
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kubectl")
ADMIN_USER = "test-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
MIN_KUSTOMIZE_KUBECTL = (1, 27)  # ships kustomize v5; older ones (Debian: 1.20, kustomize v2) miss what manifests/ uses
CRD_NAME = "lambdarollouts.lambda.rollouts.dev"  # the project's CRD, in crds/
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"  # an address range the apiserver allocates from; nothing is routed


class MissingBinaries(Exception):
    """A binary of the control plane has not been built; the message says the one command to run."""


def binary(name: str) -> Path:
    """The pinned build of ``name`` in ``.cache/kube/bin``, or ``MissingBinaries``."""
    path = BIN_DIR / name
    if not os.access(path, os.X_OK):
        raise MissingBinaries(f"{path} is missing: run `make kube-binaries` (builds it from Go modules)")
    return path


def missing_binaries() -> str | None:
    """What to do when a binary of the control plane is missing (one line), else None."""
    for name in CONTROL_PLANE_BINARIES:
        try:
            binary(name)
        except MissingBinaries as missing:
            return str(missing)
    return None


def kustomize_kubectl() -> Path:
    """A kubectl for building kustomize bases offline: the pinned one, else one on PATH from 1.27 on.

    Only ``kubectl kustomize`` needs no server, so an older client would still build manifests/
    but with an old kustomize that misses features the base uses; against the control plane the
    tests always use the pinned build, whose version matches the apiserver's.
    """
    try:
        return binary("kubectl")
    except MissingBinaries as missing:
        found = shutil.which("kubectl")
        if found is not None:
            version = subprocess.run(
                [found, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30, check=False
            )
            if version.returncode == 0:
                client = json.loads(version.stdout)["clientVersion"]
                if (int(client["major"]), int(client["minor"].rstrip("+"))) >= MIN_KUSTOMIZE_KUBECTL:
                    return Path(found)
        raise MissingBinaries(f"{missing}; a kubectl >= 1.{MIN_KUSTOMIZE_KUBECTL[1]} on PATH would also do") from None


# ---- certificates and keys ---------------------------------------------------------------------------


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_certificates(directory: Path) -> None:
    """``ca.crt``, ``apiserver.crt``/``.key`` (signed by the CA), the service-account key pair ``sa.key``/``.pub``."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lambda-rollouts test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
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
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "apiserver.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "apiserver.key", server_key)
    # Service-account tokens are JWTs signed with this key; the apiserver checks them with the public half.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# ---- processes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, even by SIGKILL (no finally runs then)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawn(name: str, args: list[str], *, log: Path) -> _Process:
    with log.open("wb") as stream:
        # A file, not a pipe, so a chatty server never blocks; a new session makes it a process group.
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    return _Process(name, popen, log)


def _wait_until_ready(
    process: _Process, probe: urllib.request.Request, *, context: ssl.SSLContext | None, within: float
) -> None:
    """Poll ``probe`` until it answers 200; fail early, with the log's tail, if the process exits."""
    deadline = time.monotonic() + within
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(probe, timeout=2, context=context) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}: {error.read()[:300].decode(errors='replace')}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"{process.name} not ready within {within:.0f} s ({last}):\n{process.log_tail()}")


# ---- the control plane -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlPlane:
    """A running etcd + kube-apiserver: where it is, how to reach it as admin or as anyone with a token."""

    server: str
    ca_file: Path
    admin_kubeconfig: Path
    directory: Path

    def kubeconfig_for_token(self, token: str, *, name: str) -> Path:
        """A kubeconfig file (``NAME.kubeconfig`` in the control plane's directory) that sends ``token``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
            "current-context": name,
        }
        path = self.directory / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this control plane (as admin unless ``kubeconfig`` says otherwise).

        With ``check``, a non-zero exit raises an AssertionError carrying kubectl's stderr.
        """
        command = [
            str(binary("kubectl")),
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            # Discovery cache inside the control plane's directory: never the user's ~/.kube.
            f"--cache-dir={self.directory / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}:\n{result.stderr.strip()}")
        return result

    def wait_established(self, crd: str, *, within: float = 60.0) -> None:
        """Until the CRD ``crd`` is Established (served).

        Not ``kubectl wait --for=condition=Established``: on a CRD created a moment ago, before the
        apiserver wrote any condition, that fails at once ("<nil> is of the type <nil>") instead of
        waiting.
        """
        deadline = time.monotonic() + within
        while True:
            found = self.kubectl("get", "crd", crd, "-o", "json", check=False)
            conditions = (json.loads(found.stdout).get("status") or {}).get("conditions") if found.stdout else None
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions or ()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {crd} not Established within {within:.0f} s: {conditions}")
            time.sleep(0.1)

    def ensure_namespace(self, namespace: str) -> None:
        """Create ``namespace`` unless it exists (never deleted: without controller-manager deletion hangs)."""
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )

    def service_account_kubeconfig(self, namespace: str, name: str, *, duration: str = "1h") -> Path:
        """A kubeconfig acting as ServiceAccount ``namespace/name`` (created if needed), by a TokenRequest token."""
        self.ensure_namespace(namespace)
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
        self.kubectl("apply", "-f", "-", input=json.dumps(account))
        token = self.kubectl(
            "create", "token", name, f"--namespace={namespace}", f"--duration={duration}"
        ).stdout.strip()
        return self.kubeconfig_for_token(token, name=f"sa-{namespace}-{name}")


@contextlib.contextmanager
def start_control_plane(directory: Path, *, ready_within: float = 120.0) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver for the block, their files and logs in ``directory``; stopped on the way out."""
    etcd, apiserver = binary("etcd"), binary("kube-apiserver")
    _write_certificates(directory)
    admin_token = secrets.token_urlsafe(32)
    tokens = directory / "tokens.csv"
    # token,user,uid,"groups": system:masters is bound to cluster-admin by the bootstrap RBAC policy.
    tokens.write_text(f'{admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    tokens.chmod(0o600)
    client_port, peer_port, secure_port = free_port(), free_port(), free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{secure_port}"
    processes: list[_Process] = []
    try:
        processes.append(
            _spawn(
                "etcd",
                [
                    str(etcd),
                    "--name=test",
                    f"--data-dir={directory / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=test={peer_url}",
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                log=directory / "etcd.log",
            )
        )
        _wait_until_ready(processes[0], urllib.request.Request(f"{etcd_url}/health"), context=None, within=ready_within)
        processes.append(
            _spawn(
                "kube-apiserver",
                [
                    str(apiserver),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    # The endpoint reconciler refuses a loopback address for the kubernetes Service;
                    # nothing here routes to it anyway.
                    "--endpoint-reconciler-type=none",
                    f"--secure-port={secure_port}",
                    f"--cert-dir={directory / 'certs'}",
                    f"--tls-cert-file={directory / 'apiserver.crt'}",
                    f"--tls-private-key-file={directory / 'apiserver.key'}",
                    f"--client-ca-file={directory / 'ca.crt'}",
                    f"--token-auth-file={tokens}",
                    "--authorization-mode=Node,RBAC",
                    f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                    f"--service-account-key-file={directory / 'sa.pub'}",
                    f"--service-account-signing-key-file={directory / 'sa.key'}",
                    f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                    "--profiling=false",
                ],
                log=directory / "kube-apiserver.log",
            )
        )
        ca_file = directory / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca_file))
        readyz = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {admin_token}"})
        _wait_until_ready(processes[1], readyz, context=context, within=ready_within)
        plane = ControlPlane(
            server=server, ca_file=ca_file, admin_kubeconfig=directory / "admin.kubeconfig", directory=directory
        )
        plane.kubeconfig_for_token(admin_token, name="admin")
        yield plane
    finally:
        for process in reversed(processes):
            process.stop()


def main() -> None:
    """``python -m tests.kube.controlplane``: a control plane to try things on, until Ctrl-C.

    Prints the admin kubeconfig's path (``export KUBECONFIG=...``); everything lives in a temporary
    directory that is removed on the way out (SIGTERM stops it as Ctrl-C does).
    """
    import sys
    import tempfile

    missing = missing_binaries()
    if missing is not None:
        sys.exit(missing)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starting it in the background leaves SIGINT ignored, which Python keeps.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    with (
        contextlib.suppress(KeyboardInterrupt),
        tempfile.TemporaryDirectory(prefix="lambda-rollouts-kube-") as directory,
        start_control_plane(Path(directory)) as plane,
    ):
        print(f"kube-apiserver {plane.server} is ready (etcd and apiserver logs in {directory})")
        print(f"export KUBECONFIG={plane.admin_kubeconfig}")
        print("Ctrl-C stops it and removes everything.", flush=True)
        signal.pause()
    print("stopped")


if __name__ == "__main__":
    main()
