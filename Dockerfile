# syntax=docker/dockerfile:1
# amnet image: CPU by default; CUDA with
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 \
#                --build-arg TORCH_INDEX_URL= -t amnet:cuda .
# (an empty TORCH_INDEX_URL takes torch==2.13.0 from PyPI, whose Linux wheels bundle CUDA).
# Run:  docker run --rm -v $PWD/outputs:/app/outputs amnet            # dvc repro on the defaults
#       docker run --rm --gpus all amnet:cuda amnet train -p params/thumos14.yaml
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# python3.11 is what python:3.11-slim ships; CUDA (Ubuntu 22.04) images get it from apt.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && if ! command -v python3.11 >/dev/null; then \
      apt-get install -y --no-install-recommends python3.11 python3.11-venv; fi \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv $VIRTUAL_ENV \
 && pip install --upgrade pip

WORKDIR /app
# Dependencies first (cached layer), then the code.
COPY pyproject.toml README.md ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"; \
    else pip install torch==2.13.0; fi
COPY amnet ./amnet
COPY workflows ./workflows
RUN pip install -e .
COPY . .

# The image carries no git history: let DVC run without an SCM (see the README).
RUN if [ ! -d .git ]; then dvc config --local core.no_scm true; fi

ENV MLFLOW_TRACKING_URI=sqlite:////app/.mlflow/mlflow.db
CMD ["dvc", "repro"]
