"""The `nst` command line: the outermost ring, composing tasks and flows."""
