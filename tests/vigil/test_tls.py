"""TLS and mutual TLS between the real services and their callers, with certificates made here
(``tests.vigil.certs``): who is let in, who is refused, and certificates replaced while serving."""

from __future__ import annotations

import json
import pathlib
import time
from dataclasses import dataclass

import pytest

from analyzer_service.detection import DetectorUnavailable
from analyzer_service.settings import AnalyzerSettings
from bridge.app import client_options
from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer, rule_checker
from detector_service.settings import DetectorSettings
from tests.vigil.certs import Authority, write_private
from tests.vigil.conftest import LoopThread, StartAnalyzer, StartDetector, jpeg
from vigil.cli import main
from vigil.core.errors import ModelNotConfigured, Unavailable, Unimplemented
from vigil.core.tls import TlsConfigError, TlsServerFiles, server_credentials
from vigil.sdk import (
    AnalyzerClient,
    AsyncDetectorClient,
    ClientOptions,
    DetectorClient,
    Picture,
)

# A bound on waiting for a client to see a health change; it normally takes milliseconds.
SETTLE_S = 10.0


@dataclass
class Pki:
    """One CA signing the services' and the callers' certificates, and a stranger CA with a
    client certificate of its own; every file as a mounted Secret holds it."""

    directory: pathlib.Path
    ca: Authority
    stranger: Authority

    def __post_init__(self) -> None:
        self.ca_file = self.ca.write(self.directory, "ca")
        self.stranger_ca_file = self.stranger.write(self.directory, "stranger-ca")
        self.server_cert, self.server_key = self.ca.issue("server", server=True).write(
            self.directory, "server"
        )
        self.client_cert, self.client_key = self.ca.issue("client", server=False).write(
            self.directory, "client"
        )
        self.stranger_cert, self.stranger_key = self.stranger.issue("client", server=False).write(
            self.directory, "stranger"
        )

    def serving(self, *, mutual: bool) -> dict[str, pathlib.Path]:
        """A service's settings serving TLS (mutual TLS: callers' certificates checked)."""
        fields = {"tls_cert_file": self.server_cert, "tls_key_file": self.server_key}
        if mutual:
            fields["tls_client_ca_file"] = self.ca_file
        return fields

    def caller(self, address: str, **overrides: object) -> ClientOptions:
        """Options of a caller trusting the CA and presenting its client certificate, failing
        at once when refused (no retries)."""
        fields: dict[str, object] = {
            "tls": True,
            "root_certificates": self.ca_file,
            "certificate_chain": self.client_cert,
            "private_key": self.client_key,
            "timeout_s": 10.0,
            "retry": None,
            **overrides,
        }
        return ClientOptions(address, **fields)  # type: ignore[arg-type]


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    return Pki(tmp_path / "tls", Authority("vigil-test-ca"), Authority("stranger-ca"))


def address(server: DetectorServer) -> str:
    return f"127.0.0.1:{server.port}"


def answers(options: ClientOptions) -> bool:
    """Whether a detector call with ``options`` gets through (False: the connection is
    refused, during the handshake on either side)."""
    with DetectorClient(options) as client:
        try:
            client.list_sources()
        except Unavailable:
            return False
        return True


def refused_soon(client: DetectorClient) -> bool:
    """Whether calls through ``client`` start failing with UNAVAILABLE within SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        try:
            client.list_sources()
        except Unavailable:
            return True
    return False


def test_tls_serves_clients_that_trust_its_ca(start_detector: StartDetector, pki: Pki) -> None:
    detector = start_detector(**pki.serving(mutual=False))
    where = address(detector)

    # Without mutual TLS a caller needs no certificate of its own.
    assert answers(pki.caller(where, certificate_chain=None, private_key=None))
    with DetectorClient(pki.caller(where)) as client:
        assert client.health() == "SERVING"
        assert [s.id for s in client.list_sources()] == ["default"]

    # A caller trusting another CA refuses the server; a plaintext caller gets nowhere.
    assert not answers(pki.caller(where, root_certificates=pki.stranger_ca_file))
    assert not answers(ClientOptions(where, timeout_s=10.0, retry=None))


def test_mutual_tls_refuses_callers_without_a_valid_certificate(
    start_detector: StartDetector, pki: Pki
) -> None:
    detector = start_detector(**pki.serving(mutual=True))
    where = address(detector)

    assert answers(pki.caller(where))
    assert not answers(pki.caller(where, certificate_chain=None, private_key=None))
    assert not answers(
        pki.caller(where, certificate_chain=pki.stranger_cert, private_key=pki.stranger_key)
    )
    assert not answers(ClientOptions(where, timeout_s=10.0, retry=None))
    # Refused during the handshake: not even health is answered.
    anonymous = pki.caller(where, certificate_chain=None, private_key=None)
    with DetectorClient(anonymous) as client, pytest.raises(Unavailable):
        client.health()


def test_client_side_health_checking_works_over_mutual_tls(
    start_detector: StartDetector, loop_thread: LoopThread, pki: Pki
) -> None:
    detector = start_detector(**pki.serving(mutual=True))
    # A target naming replicas: round robin over those whose health, watched over the same
    # TLS connection, is SERVING.
    target = f"ipv4:127.0.0.1:{detector.port}"
    options = pki.caller(target, server_name="localhost", health_checked=True)
    with DetectorClient(options) as client:
        assert [s.id for s in client.list_sources()] == ["default"]
        loop_thread.run(detector.service.set_serving(False))
        # The channel learns of NOT_SERVING through the health watch and sends no new calls.
        assert refused_soon(client)
        assert client.health() == "NOT_SERVING"


def test_analyzer_serves_mutual_tls_and_calls_the_detector_with_its_certificate(
    start_detector: StartDetector,
    start_analyzer: StartAnalyzer,
    loop_thread: LoopThread,
    pki: Pki,
    tmp_path: pathlib.Path,
) -> None:
    detector = start_detector(**pki.serving(mutual=True))
    to_detector = {"detector_address": address(detector), "detector_tls_ca_file": pki.ca_file}
    analyzer = start_analyzer(
        **pki.serving(mutual=True),
        **to_detector,
        detector_tls_cert_file=pki.client_cert,
        detector_tls_key_file=pki.client_key,
    )
    where = f"127.0.0.1:{analyzer.port}"
    with AnalyzerClient(pki.caller(where)) as client:
        assert client.health() == "SERVING"
        assert client.list_jobs().items == ()
    anonymous = pki.caller(where, certificate_chain=None, private_key=None)
    with AnalyzerClient(anonymous) as client, pytest.raises(Unavailable):
        client.list_jobs()

    frame = write_private(tmp_path / "frame.jpg", jpeg())
    assert analyzer.detector is not None
    detections = loop_thread.run(analyzer.detector.detect([frame], source_id="tls-test"))
    assert detections == [[]]

    # An analyzer that trusts the detector but has no certificate to show is refused by it.
    uncertified = start_analyzer(**to_detector)
    assert uncertified.detector is not None
    with pytest.raises(DetectorUnavailable):
        loop_thread.run(uncertified.detector.detect([frame], source_id="tls-test"))


def test_the_bridge_reaches_its_backends_over_mutual_tls(
    start_detector: StartDetector, loop_thread: LoopThread, pki: Pki
) -> None:
    detector = start_detector(**pki.serving(mutual=True))
    settings = BridgeSettings(
        detector_address=address(detector),
        backend_tls_ca_file=pki.ca_file,
        backend_tls_cert_file=pki.client_cert,
        backend_tls_key_file=pki.client_key,
    )

    async def ask() -> str:
        client = AsyncDetectorClient(client_options(settings.detector_address, settings))
        try:
            return await client.health()
        finally:
            await client.close()

    assert loop_thread.run(ask()) == "SERVING"


def test_a_replaced_certificate_is_served_without_a_restart(
    start_detector: StartDetector, pki: Pki
) -> None:
    detector = start_detector(**pki.serving(mutual=True))
    where = address(detector)
    assert answers(pki.caller(where))

    # The operator moves to a new CA: the server's certificate and its client CA are replaced.
    renewed = Authority("renewed-ca")
    issued = renewed.issue("server", server=True)
    new_client_cert, new_client_key = renewed.issue("client", server=False).write(
        pki.directory, "new-client"
    )
    trusting_renewed_client = {"certificate_chain": new_client_cert, "private_key": new_client_key}
    trusting_renewed = {
        "root_certificates": renewed.write(pki.directory, "renewed-ca"),
        **trusting_renewed_client,
    }

    # Half-way (the certificate written, its key not yet) the old pair keeps serving.
    write_private(pki.server_cert, issued.cert_pem)
    assert answers(pki.caller(where))
    assert not answers(pki.caller(where, **trusting_renewed))

    write_private(pki.server_key, issued.key_pem)
    write_private(pki.ca_file, renewed.cert_pem)
    # New connections get the new certificate and are checked against the new client CA.
    assert answers(pki.caller(where, **trusting_renewed))
    # The old client certificate is refused (the client CA was replaced), and a caller still
    # trusting the old CA refuses the new certificate.
    renewed_ca = trusting_renewed["root_certificates"]
    assert not answers(pki.caller(where, root_certificates=renewed_ca))
    old_ca = write_private(pki.directory / "old-ca.crt", pki.ca.cert_pem)
    assert not answers(pki.caller(where, root_certificates=old_ca, **trusting_renewed_client))


def test_unusable_files_stop_the_start_and_name_the_file(pki: Pki) -> None:
    missing = pki.directory / "missing.key"
    with pytest.raises(TlsConfigError, match=f"cannot read the private key file {missing}"):
        server_credentials(TlsServerFiles(pki.server_cert, missing))

    not_pem = write_private(pki.directory / "not-pem.crt", b"hello")
    with pytest.raises(TlsConfigError, match="holds no PEM certificate"):
        server_credentials(TlsServerFiles(not_pem, pki.server_key))

    # A key of another certificate: named, its contents never shown.
    with pytest.raises(TlsConfigError, match="not a usable pair") as refused:
        server_credentials(TlsServerFiles(pki.server_cert, pki.client_key))
    assert "PRIVATE KEY" not in str(refused.value)
    assert pki.client_key.read_text().splitlines()[1] not in str(refused.value)

    with pytest.raises(TlsConfigError, match="cannot read the client CA certificate file"):
        server_credentials(TlsServerFiles(pki.server_cert, pki.server_key, missing))


def test_settings_naming_unusable_files_are_refused_before_anything_starts(
    pki: Pki, tmp_path: pathlib.Path
) -> None:
    missing = pki.directory / "missing.crt"
    with pytest.raises(TlsConfigError, match=f"certificate file {missing}"):
        DetectorSettings(data_dir=tmp_path, tls_cert_file=missing, tls_key_file=pki.server_key)
    with pytest.raises(TlsConfigError, match="set both or none"):
        DetectorSettings(data_dir=tmp_path, tls_cert_file=pki.server_cert)
    with pytest.raises(TlsConfigError, match="needs the server's certificate"):
        DetectorSettings(data_dir=tmp_path, tls_client_ca_file=pki.ca_file)
    with pytest.raises(TlsConfigError, match="not a usable pair"):
        AnalyzerSettings(
            data_dir=tmp_path,
            detector_tls_cert_file=pki.client_cert,
            detector_tls_key_file=pki.server_key,
        )
    with pytest.raises(TlsConfigError, match="set both or none"):
        BridgeSettings(backend_tls_cert_file=pki.client_cert)
    with pytest.raises(TlsConfigError, match=f"CA certificate file {missing}"):
        BridgeSettings(backend_tls_ca_file=missing)
    # Plaintext stays the default.
    assert DetectorSettings(data_dir=tmp_path).tls is None
    assert AnalyzerSettings(data_dir=tmp_path).detector_tls is None
    assert BridgeSettings().backend_tls is None


def test_the_cli_presents_a_client_certificate(
    start_detector: StartDetector, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    detector = start_detector(**pki.serving(mutual=True))
    connection = ["--detector", address(detector), "--root-cert", str(pki.ca_file)]
    identity = ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    assert main(["sources", "ls", "--json", *connection, *identity]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == ["default"]
    # Without a certificate of its own the CLI is refused: the service cannot be reached.
    assert main(["sources", "ls", *connection]) == 3
    assert "cannot reach the detector service" in capsys.readouterr().err


def test_a_plaintext_health_port_serves_probes_that_cannot_speak_tls(
    start_detector: StartDetector, loop_thread: LoopThread, pki: Pki
) -> None:
    detector = start_detector(**pki.serving(mutual=True), health_port=0)
    probe = ClientOptions(f"127.0.0.1:{detector.service.health_port}", timeout_s=10.0, retry=None)
    with DetectorClient(probe) as client:
        assert client.health() == "SERVING"
        # Health alone: the service's own methods are not there.
        with pytest.raises(Unimplemented):
            client.list_sources()
        loop_thread.run(detector.service.set_serving(False))
        assert client.health() == "NOT_SERVING"


def test_the_detector_asks_a_mutual_tls_analyzer_with_its_certificate(
    start_analyzer: StartAnalyzer, loop_thread: LoopThread, pki: Pki
) -> None:
    analyzer = start_analyzer(**pki.serving(mutual=True))
    where = f"127.0.0.1:{analyzer.port}"
    picture = Picture(jpeg(), "frame")

    async def ask(cert: pathlib.Path | None, key: pathlib.Path | None) -> None:
        settings = DetectorSettings(
            analyzer_url=where,
            analyzer_tls_ca_file=pki.ca_file,
            analyzer_tls_cert_file=cert,
            analyzer_tls_key_file=key,
            watch_rule_timeout_s=10,
        )
        checker = rule_checker(settings)
        assert checker.client is not None
        try:
            await checker.client.check_watch_rule(
                rule_id="r", source_id="cam", condition="a person", pictures=[picture]
            )
        finally:
            await checker.close()

    # Through the handshake: the analyzer itself answers (it has no model here).
    with pytest.raises(ModelNotConfigured):
        loop_thread.run(ask(pki.client_cert, pki.client_key))
    # Without a certificate to show, the analyzer refuses the connection.
    with pytest.raises(Unavailable):
        loop_thread.run(ask(None, None))
