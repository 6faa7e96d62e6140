"""Why nets do or do not train: gradient-flow diagnostics and the measured phase diagram."""
