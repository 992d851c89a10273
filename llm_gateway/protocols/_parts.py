"""Media parts in the conventions' shapes (their JSON schema's BlobPart, UriPart, FilePart): each names its
`modality`, and a blob carries its `content`, base64 as the request sent it. Parts exist only under content capture.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote_to_bytes

_MODALITIES = ("image", "audio", "video")


def modality(mime: str | None, default: str = "document") -> str:
    """The conventions' modality of a MIME type: image, audio or video by its top-level type, else `default`."""
    kind = (mime or "").partition("/")[0].lower()
    return kind if kind in _MODALITIES else default


def blob(content: str | None, mime: str | None, kind: str | None = None) -> dict[str, Any]:
    """An inline media part: `content` is the base64 the request carried (empty when it carried none)."""
    part: dict[str, Any] = {"type": "blob", "modality": kind or modality(mime), "content": content or ""}
    if mime:
        part["mime_type"] = mime
    return part


def data_url_blob(url: str | None, kind: str | None = None) -> dict[str, Any]:
    """A blob from a `data:` URL (`data:image/png;base64,...`); a URL-encoded payload is base64-encoded here."""
    header, _, payload = (url or "").partition(",")
    mime = header[5:].partition(";")[0] if header.startswith("data:") else ""
    if header.startswith("data:") and not header.endswith(";base64"):
        payload = base64.b64encode(unquote_to_bytes(payload)).decode()
    return blob(payload, mime or None, kind)
