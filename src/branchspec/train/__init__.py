"""Training: losses as free functions, loops, atomic checkpoints and resume."""
