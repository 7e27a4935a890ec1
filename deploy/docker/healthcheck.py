"""A container's health check, for engines without native probes (compose's ``healthcheck``).

``healthcheck.py grpc HOST:PORT``: the standard gRPC health of the whole server (service "");
``healthcheck.py http URL``: an HTTP GET answering 2xx. Exit status 0 when healthy, 1 otherwise,
with one line saying why. Images have no curl or grpc_health_probe; Python and grpcio they have.
Kubernetes does not need this: it probes gRPC health and HTTP natively.
"""

from __future__ import annotations

import sys
import urllib.request

TIMEOUT_S = 3.0


def grpc_health(target: str) -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        except grpc.RpcError as error:
            return f"{target}: {error.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    return None if status == "SERVING" else f"{target}: {status}"


def http_health(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            return None if 200 <= answer.status < 300 else f"{url}: HTTP {answer.status}"
    except OSError as error:
        return f"{url}: {error}"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("grpc", "http"):
        print("usage: healthcheck.py grpc HOST:PORT | http URL", file=sys.stderr)
        return 2
    problem = grpc_health(argv[1]) if argv[0] == "grpc" else http_health(argv[1])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
