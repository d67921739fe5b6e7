"""Branch architectures, shared layers (layers.py) and the one registry (registry.py: builder, tiny config, example input)."""
