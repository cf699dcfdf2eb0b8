"""TLS on the websocket servers, the backbone's security settings, secrets kept out of sight."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from node_server.settings import NodeServerSettings
from shared.catalogue import SERVICES
from shared.kafka import client_options
from tests.integration.test_security import RIGHT, TOKENS, first_error
from tests.support import clients
from tests.support.http import status
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import Backends

# --- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = (
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=wspool-test -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
    )
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@contextlib.contextmanager
def worker_server_process(
    backends: Backends, port: int, internal_port: int, **settings: str
) -> Iterator[subprocess.Popen[str]]:
    """`python -m worker_server` as operators run it, on 127.0.0.1 and the two ports, with
    `settings` (by field name) in its environment; stopped with SIGTERM."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_SERVER_")}
    fields = {"port": str(port), "internal_port": str(internal_port), "host": "127.0.0.1"}
    own = {f"WORKER_SERVER_{name.upper()}": value for name, value in {**fields, **settings}.items()}
    process = subprocess.Popen(
        [sys.executable, "-m", "worker_server"],
        env={**base, **backends.env("WORKER_SERVER_"), **own},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def _wait_ready(
    url: str, ssl_context: ssl.SSLContext | None, process: subprocess.Popen
) -> None:
    async def answer() -> int | None:
        assert process.poll() is None, f"worker_server exited with {process.returncode}"
        return await status(url, ssl=ssl_context)

    await until(answer, lambda got: got == 200, timeout=30)


async def test_tls_serves_wss_and_no_secret_reaches_the_logs(
    backends: Backends, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    port, internal_port = free_port(), free_port()
    trusted = ssl.create_default_context(cafile=str(cert))
    with worker_server_process(
        backends,
        port,
        internal_port,
        log_level="DEBUG",
        auth_tokens=TOKENS,
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        server_instance="tls-test",
    ) as process:
        # TLS faces the internet; the internal port stays plain HTTP for probes and scrapers.
        await _wait_ready(f"http://127.0.0.1:{internal_port}/readyz", None, process)
        async with aiohttp.ClientSession() as session:
            url = f"wss://127.0.0.1:{port}/"
            for auth in (
                {"headers": {"Authorization": f"Bearer {RIGHT}"}},
                {"params": {"token": RIGHT}},
            ):
                async with session.ws_connect(url, ssl=trusted, **auth) as ws:
                    worker = clients.Worker(ws)
                    await worker.send(clients.welcome())
                    await worker.send(b"{}")
                    assert (await first_error(worker))["code"] == "invalid_message"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, ssl=trusted, params={"token": "wrong-token"})
            assert refused.value.status == 401
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.ws_connect(url)  # the system CAs don't know it
            with pytest.raises(aiohttp.ClientError):
                await session.ws_connect(f"ws://127.0.0.1:{port}/")  # plain text is refused
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert output.count('"worker_connected"') == 2, output
    for secret in ("s3cret", "wrong-token", "guest:guest", backends.postgres_dsn):
        assert secret not in output


async def test_half_sent_requests_are_dropped_after_the_idle_timeout(backends: Backends) -> None:
    port, internal_port = free_port(), free_port()
    with worker_server_process(
        backends, port, internal_port, http_idle_timeout_seconds="1", server_instance="idle-test"
    ) as process:
        await _wait_ready(f"http://127.0.0.1:{internal_port}/healthz", None, process)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Slow: ")
            async with asyncio.timeout(20):  # one byte at a time, never finishing
                while not reader.at_eof():
                    writer.write(b"a")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(100), 0.2)
        finally:
            writer.close()
        assert process.poll() is None  # dropped the socket, still serving


@pytest.mark.parametrize("service", SERVICES)
def test_help_never_prints_secrets_from_the_environment(service: str) -> None:
    prefix = SERVICES[service].env_prefix
    secrets = {
        "POSTGRES_DSN": "postgresql://app:pg-s3cret@db:5432/wspool",
        "RABBITMQ_URL": "amqps://app:mq-s3cret@mq:5671/",
        "KAFKA_SASL_PASSWORD": "kafka-s3cret",
        "AUTH_TOKENS": "token-s3cret",
        "ADMIN_TOKEN": "admin-s3cret",
    }
    # Only the secrets this service reads: any other would be an unknown setting.
    fields = SERVICES[service].settings_class().model_fields
    env = {"PATH": "/usr/bin", **{prefix + k: v for k, v in secrets.items() if k.lower() in fields}}
    result = subprocess.run(
        [sys.executable, "-m", service, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize("flag", ["--tls-cert-file", "--tls-key-file"])
def test_tls_files_must_be_set_together(flag: str, certificate: tuple[Path, Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node_server", flag, str(certificate[0])],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: invalid setting tls_cert_file and tls_key_file must be set together"
    )


def test_unreadable_or_wrong_tls_files_stop_with_one_line(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    cases = {
        (cert, tmp_path / "missing.pem"): "tls_key_file: ",
        (key, key): "TLS certificate/key unusable",  # a key is not a certificate
    }
    for (cert_file, key_file), expected in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "worker_server", "--tls-cert-file", str(cert_file)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin", "WORKER_SERVER_TLS_KEY_FILE": str(key_file)},
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr


# --- Kafka security pass-through ---------------------------------------------


async def test_kafka_sasl_ssl_settings_reach_aiokafka(certificate: tuple[Path, Path]) -> None:
    settings = NodeServerSettings(
        kafka_bootstrap_servers="kafka.internal:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="wspool",
        kafka_sasl_password="kafka-s3cret",
        kafka_ssl_cafile=certificate[0],
    )
    options = client_options(settings)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "kafka.internal:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "wspool",
        "sasl_plain_password": "kafka-s3cret",
        "client_id": "wspool-node-server",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    subjects = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "wspool-test"} in subjects
    producer = AIOKafkaProducer(**options, ssl_context=context)  # aiokafka accepts them
    assert producer.client._security_protocol == "SASL_SSL"
    await producer.stop()
    assert "kafka-s3cret" not in repr(settings)


async def test_kafka_plaintext_has_no_security_options() -> None:
    options = client_options(NodeServerSettings(kafka_bootstrap_servers="a:9092,b:9092"))
    assert options == {
        "bootstrap_servers": "a:9092,b:9092",
        "security_protocol": "PLAINTEXT",
        "client_id": "wspool-node-server",
    }
    ssl_only = client_options(NodeServerSettings(kafka_security_protocol="SSL"))
    assert isinstance(ssl_only["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in ssl_only
