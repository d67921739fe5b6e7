"""Analyses of trained branched models: pure functions over branch outputs (M, N, ...)."""
