# tunewatch daemon image: slim, non-root, with a health check.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 ORT_DISABLE_TELEMETRY=1 \
    TUNEWATCH_DATA_DIR=/var/lib/tunewatch TUNEWATCH_CONFIG=/etc/tunewatch/tunewatch.yaml

RUN groupadd --system tunewatch && useradd --system --gid tunewatch --home /var/lib/tunewatch tunewatch \
    && mkdir -p /var/lib/tunewatch /etc/tunewatch && chown tunewatch:tunewatch /var/lib/tunewatch
# the store (requests, labels, tokens, the audit chain) outlives the container; declared
# after the chown, so that a new volume starts owned by the non-root user
VOLUME ["/var/lib/tunewatch"]

WORKDIR /opt/tunewatch
COPY constraints.txt pyproject.toml README.md ./
COPY monitor ./monitor
COPY shadow ./shadow
COPY retune ./retune
COPY tunewatch ./tunewatch
RUN pip install "pip==26.3" && pip install -c constraints.txt . && rm -rf /root/.cache
COPY configs ./configs
COPY configs/tunewatch.yaml /etc/tunewatch/tunewatch.yaml
# the example's `data_dir: .tunewatch` made the file and TUNEWATCH_DATA_DIR disagree: every
# command warned, advising to unset the one that points at the volume
RUN sed -i 's|^data_dir: .*|data_dir: /var/lib/tunewatch    # the volume, as TUNEWATCH_DATA_DIR|' \
    /etc/tunewatch/tunewatch.yaml && grep -q '^data_dir: /var/lib/tunewatch ' /etc/tunewatch/tunewatch.yaml

USER tunewatch
EXPOSE 8080
# no proxy: Docker puts the client config's proxies into $HTTP_PROXY, which urlopen obeys;
# -P: not the sources in the working directory
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -P -c "import urllib.request as u,sys; sys.exit(0 if u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["tunewatch", "serve", "--host", "0.0.0.0"]
