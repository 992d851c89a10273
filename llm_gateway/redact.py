"""Credentials taken out of URLs before they are shown: on a span, or in an error the gateway answers with."""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: query parameters that carry credentials (Gemini's `?key=`, Azure SAS-style tokens): never shown
SECRET_QUERY_PARAMS = frozenset({"key", "api-key", "api_key", "access_token", "token", "sig"})


@functools.lru_cache(maxsize=256)  # every span of a call to the same URL asks again
def url_without_credentials(full: str) -> str:
    """`full` with the credential-carrying query parameters taken out and user info redacted (`REDACTED:REDACTED@`,
    the semantic conventions' form for `url.full`), every other byte as it was."""
    parts = urlsplit(full)
    if "@" in parts.netloc:
        user_info, _, host = parts.netloc.rpartition("@")
        redacted = "REDACTED:REDACTED" if ":" in user_info else "REDACTED"
        parts = parts._replace(netloc=f"{redacted}@{host}")
        full = urlunsplit(parts)
    if not parts.query:
        return full
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in SECRET_QUERY_PARAMS]
    if len(kept) == len(pairs):
        return full
    return urlunsplit(parts._replace(query=urlencode(kept)))
