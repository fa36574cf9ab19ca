"""Benchmarks that print JSON and draw a PNG. ``gpu``: the GPU table of `make gpu-check`."""
