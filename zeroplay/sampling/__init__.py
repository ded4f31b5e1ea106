"""zeroplay.sampling."""
