"""zeroplay.data."""
