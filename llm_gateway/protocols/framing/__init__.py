"""Framing decoders shared by the adapters: bytes in, frames out, any chunking, bounded buffers."""


class FramingError(ValueError):
    """The bytes break the framing (an oversized event, a bad checksum); the message says which and where."""


#: Largest single frame or event a decoder buffers before giving up on the body: 16 MiB. Model events are
#: small (a few KB), but a tool call's whole arguments or a base64 image can arrive in one event.
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
