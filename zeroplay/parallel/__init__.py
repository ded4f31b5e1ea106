"""zeroplay.parallel."""
