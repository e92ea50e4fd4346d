"""Models: multi-task Chemprop with joint sampling."""
