# syntax=docker/dockerfile:1
# GPU image; also runs on CPU-only hosts (FACE_DEVICE=auto falls back to the CPU).
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
RUN pip install torch==2.14.1 torchvision==0.29.1
# The dependencies first, from pyproject.toml alone (over an empty app package), so that a
# change to the code rebuilds only the layers below and does not reinstall them.
COPY pyproject.toml README.md LICENSE ./
RUN mkdir app && touch app/__init__.py \
    && pip install . && pip uninstall -y face-service \
    && rm -rf app build *.egg-info
# The weights before the code, so that a code change does not download them again (110 MB).
# ADD refuses them unless their sha256 is the pin of models/registry.json (a test compares).
ADD --checksum=sha256:281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b --chmod=644 \
    https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt \
    models/pretrained/20180402-114759-vggface2.pt
COPY app ./app
COPY models ./models
RUN pip install --no-deps . && rm -rf build *.egg-info

# With the code: checks the weights' sha256 against models/registry.json once more (and
# would fetch them if they were missing).
RUN python -m app models fetch facenet-vggface2

# The service writes only its data and fine-tuned checkpoints; the code, the pretrained
# weights and registry.json (their sha256 pins) stay root's and read-only to it.
RUN useradd --create-home --uid 10001 face \
    && mkdir -p /data /app/models/finetuned \
    && chown -R face:face /data /app/models/finetuned
USER face

ENV FACE_DATA_DIR=/data \
    FACE_MODELS_DIR=/app/models \
    FACE_HOST=0.0.0.0 \
    FACE_PORT=8000
EXPOSE 8000
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/health' % os.environ.get('FACE_PORT', '8000'), timeout=4)" || exit 1

# Listening on 0.0.0.0 requires FACE_API_KEYS; the service refuses to start without them.
CMD ["python", "-m", "app", "serve"]
