"""Services on top of rpmsg, both sides of each, compatible with the C demos.

* :mod:`.echo` — the echo service and ping (``rpmsg-echo`` / ``msg-test-rpmsg-ping``)
* :mod:`.matrix` — matrix multiply (``matrix_multiplyd`` / ``matrix_multiply``)
* :mod:`.proxy` — the retarget proxy: the remote's files and console on the host (``rpc_demo``)
* :mod:`.rpc` — RPC client/server on ``rpmsg-rpc`` and the file service of the Linux RPC demo
* :mod:`.sample` — the Linux rpmsg-client-sample (``rpmsg-sample-echo`` / ``-ping``)
* :mod:`.base` — the :class:`Service` base class the remote sides share
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "Service": ".base",
    "ECHO_SERVICE": ".echo",
    "EchoService": ".echo",
    "EchoStats": ".echo",
    "PingResult": ".echo",
    "ping_payload": ".echo",
    "run_ping": ".echo",
    "Matrix": ".matrix",
    "MatrixResult": ".matrix",
    "MatrixService": ".matrix",
    "multiply": ".matrix",
    "run_matrix": ".matrix",
    "ProxyClient": ".proxy",
    "ProxyError": ".proxy",
    "ProxyServer": ".proxy",
    "ProxyStats": ".proxy",
    "RPC_SERVICE": ".rpc",
    "RpcClient": ".rpc",
    "RpcError": ".rpc",
    "RpcFileClient": ".rpc",
    "RpcFileServer": ".rpc",
    "RpcServer": ".rpc",
    "run_file_demo": ".rpc",
    "GOODBYE": ".sample",
    "HELLO": ".sample",
    "SampleEcho": ".sample",
    "SampleResult": ".sample",
    "run_sample": ".sample",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .base import (
        Service as Service,
    )
    from .echo import (
        ECHO_SERVICE as ECHO_SERVICE,
        EchoService as EchoService,
        EchoStats as EchoStats,
        PingResult as PingResult,
        ping_payload as ping_payload,
        run_ping as run_ping,
    )
    from .matrix import (
        Matrix as Matrix,
        MatrixResult as MatrixResult,
        MatrixService as MatrixService,
        multiply as multiply,
        run_matrix as run_matrix,
    )
    from .proxy import (
        ProxyClient as ProxyClient,
        ProxyError as ProxyError,
        ProxyServer as ProxyServer,
        ProxyStats as ProxyStats,
    )
    from .rpc import (
        RPC_SERVICE as RPC_SERVICE,
        RpcClient as RpcClient,
        RpcError as RpcError,
        RpcFileClient as RpcFileClient,
        RpcFileServer as RpcFileServer,
        RpcServer as RpcServer,
        run_file_demo as run_file_demo,
    )
    from .sample import (
        GOODBYE as GOODBYE,
        HELLO as HELLO,
        SampleEcho as SampleEcho,
        SampleResult as SampleResult,
        run_sample as run_sample,
    )
