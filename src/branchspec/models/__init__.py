"""Branch architectures and the registry that rebuilds models from checkpoints."""
