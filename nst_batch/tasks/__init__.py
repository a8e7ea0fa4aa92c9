"""Adapters from the core to files, storage, devices and Prefect."""
