# CPU image of the skinscreen service with the shipped models. Multi-stage: the build stage
# makes a venv with the core dependencies only (onnxruntime — no torch) and installs the
# project from /app; the runtime stage copies the venv and /app to the same paths.
# Not built in this project's CI (no Docker engine there) — keep it simple.
FROM python:3.11-slim-bookworm AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY fhir_mappings ./fhir_mappings
# editable: templates/, translations/ and models/ are found next to the code in /app
RUN pip install --no-cache-dir --upgrade pip wheel && pip install --no-cache-dir -e .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core fonts-noto-cjk fonts-noto-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 skinscreen \
 && mkdir /data && chown skinscreen:skinscreen /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /app /app
COPY models ./models
COPY templates ./templates
COPY translations ./translations
COPY contracts ./contracts
ENV PATH=/opt/venv/bin:$PATH \
    SKINSCREEN_HOST=0.0.0.0 \
    SKINSCREEN_DATA_DIR=/data
USER skinscreen
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"
CMD ["skinscreen", "serve"]
