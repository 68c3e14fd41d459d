"""gRPC channel options both ends share: the server (service/grpc/server.py) and the TF Serving client
(service/backends/tfserving.py), which must not depend on each other."""

from __future__ import annotations


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Both ends need these: gRPC's 4 MiB default is too small for a batch of photos."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]
