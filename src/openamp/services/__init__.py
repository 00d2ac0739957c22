"""Services on top of rpmsg: the echo demo now; proxy, RPC and the other demos to come."""

from .echo import ECHO_SERVICE, EchoService, EchoStats, PingResult, ping_payload, run_ping

__all__ = ["ECHO_SERVICE", "EchoService", "EchoStats", "PingResult", "ping_payload", "run_ping"]
