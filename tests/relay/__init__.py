"""Tests of the relay over real sockets: SDK clients, raw bytes, headers, failures, WebSockets."""
