# One image for the whole distribution; the service is chosen by argument:
#   docker run homecare:0.1.0 up --services ledger --host 0.0.0.0 --port 8080 --no-demo-data
# Build: docker build -t homecare:0.1.0 .
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, so code changes do not rebuild them (ortools and friends are large).
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY services ./services
RUN python -m venv /opt/homecare \
 && /opt/homecare/bin/pip install --upgrade pip wheel \
 && /opt/homecare/bin/pip install .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/homecare/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOMECARE_DATA_DIR=/tmp/homecare \
    HOMECARE_LOG_JSON=true
# tzdata: business rules run in the service area's local time (Asia/Shanghai by default).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 homecare \
 && useradd --uid 10001 --gid homecare --no-create-home --shell /usr/sbin/nologin homecare
COPY --from=build /opt/homecare /opt/homecare
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
ENTRYPOINT ["homecare"]
CMD ["up", "--host", "0.0.0.0", "--port", "8080"]
