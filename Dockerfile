# Image for HPO workers, the optuna-dashboard and the MLflow server of docker-compose.yml.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 ADMET_HOME=/work ADMET_DATA_DIR=/data
RUN apt-get update && apt-get install -y --no-install-recommends libxrender1 libxext6 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY configs ./configs
COPY studies ./studies
# The PyTorch wheel index: "cpu" (default) installs no CUDA packages; a CUDA tag such as
# "cu128" (docker compose's gpu profile: --build-arg TORCH_VARIANT=cu128) builds the GPU
# worker image, whose wheels bring the CUDA runtime (the host needs only the driver and
# the NVIDIA Container Toolkit).
ARG TORCH_VARIANT=cpu
RUN pip install torch==2.13.0 --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
    && pip install -e .
VOLUME ["/work"]
CMD ["python", "-m", "admet.hpo", "status"]
