"""Where pairs run: task runners, Dask clusters, devices, and the Prefect tasks and runs."""
