# llm-gateway: the tracing proxy, as a small non-root image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY llm_gateway ./llm_gateway
COPY fixtures ./fixtures
RUN pip install --no-cache-dir '.[speed]' \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin gateway

USER gateway
EXPOSE 8787
# Inside a container the gateway must listen on all interfaces to be reachable through the published port;
# docker-compose.yml publishes it on the host's loopback only.
ENV LLM_GATEWAY_HOST=0.0.0.0
ENTRYPOINT ["llm-gateway"]
CMD ["serve"]
