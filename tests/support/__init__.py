"""Helpers shared by several test modules (plain functions and constants; the shared pytest fixtures that use
them are in tests/conftest.py). Importable as ``support.*`` because pytest puts tests/ on sys.path."""
