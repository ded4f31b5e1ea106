"""zeroplay.checkpoint."""
