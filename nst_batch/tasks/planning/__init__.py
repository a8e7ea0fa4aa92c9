"""Planning: a manifest (and its sweeps) becomes a checked plan of pairs, before any work."""
