"""The gateway's own HTTP/1.1 client for relayed requests: pooled keep-alive connections, the request written in
one piece, the response parsed by llhttp (httptools) and its body handed over as it arrives.

aiohttp's client did this job first. Per request it built a request object, a payload, a task to write the body
and a StreamReader to read the answer: about a third of the relay's CPU per request in bench/. This client does
only what a relay needs. aiohttp's client is still used for WebSockets, and for every request when
`LLM_GATEWAY_HTTP_SPANS=aiohttp` asks for its instrumentation (`via_aiohttp.py`).
"""
