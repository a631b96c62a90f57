"""Datasets: the shared NumPy archives and their splits."""
