"""One pair: decode its images, produce it with the core (style targets cached), record it in its sidecar."""
