"""Services on top of rpmsg, both sides of each, compatible with the C demos.

* :mod:`.echo` — the echo service and ping (``rpmsg-echo`` / ``msg-test-rpmsg-ping``)
* :mod:`.matrix` — matrix multiply (``matrix_multiplyd`` / ``matrix_multiply``)
* :mod:`.proxy` — the retarget proxy: the remote's files and console on the host (``rpc_demo``)
* :mod:`.rpc` — RPC client/server on ``rpmsg-rpc`` and the file service of the Linux RPC demo
* :mod:`.sample` — the Linux rpmsg-client-sample (``rpmsg-sample-echo`` / ``-ping``)
* :mod:`.base` — the :class:`Service` base class the remote sides share
"""

from .base import Service
from .echo import ECHO_SERVICE, EchoService, EchoStats, PingResult, ping_payload, run_ping
from .matrix import Matrix, MatrixResult, MatrixService, multiply, run_matrix
from .proxy import ProxyClient, ProxyError, ProxyServer, ProxyStats
from .rpc import (
    RPC_SERVICE,
    RpcClient,
    RpcError,
    RpcFileClient,
    RpcFileServer,
    RpcServer,
    run_file_demo,
)
from .sample import GOODBYE, HELLO, SampleEcho, SampleResult, run_sample

__all__ = [
    "ECHO_SERVICE",
    "GOODBYE",
    "HELLO",
    "RPC_SERVICE",
    "EchoService",
    "EchoStats",
    "Matrix",
    "MatrixResult",
    "MatrixService",
    "PingResult",
    "ProxyClient",
    "ProxyError",
    "ProxyServer",
    "ProxyStats",
    "RpcClient",
    "RpcError",
    "RpcFileClient",
    "RpcFileServer",
    "RpcServer",
    "SampleEcho",
    "SampleResult",
    "Service",
    "multiply",
    "ping_payload",
    "run_file_demo",
    "run_matrix",
    "run_ping",
    "run_sample",
]
