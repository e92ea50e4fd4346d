"""admet."""
