"""zeroplay.rl."""
