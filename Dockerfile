# CPU image of the skinscreen service with the shipped models. Multi-stage: build a venv with
# the core dependencies only (onnxruntime, no torch), then copy it into a slim runtime image.
# Not built in this project's CI (no Docker engine there) — keep it simple.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY service ./service
COPY fhir_mappings ./fhir_mappings
RUN pip install --no-cache-dir --upgrade pip wheel && pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 skinscreen
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=skinscreen:skinscreen models ./models
COPY --chown=skinscreen:skinscreen templates ./templates
COPY --chown=skinscreen:skinscreen translations ./translations
COPY --chown=skinscreen:skinscreen contracts ./contracts
ENV PATH=/opt/venv/bin:$PATH \
    SKINSCREEN_HOST=0.0.0.0 \
    SKINSCREEN_MODELS_DIR=/app/models \
    SKINSCREEN_DATA_DIR=/data \
    SKINSCREEN_TEMPLATES_DIR=/app/templates \
    SKINSCREEN_TRANSLATIONS_DIR=/app/translations
RUN mkdir /data && chown skinscreen:skinscreen /data
USER skinscreen
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)" || exit 1
CMD ["skinscreen", "serve"]
