"""Training code (the demo ensemble): kept out of the runtime steps and their containers."""
