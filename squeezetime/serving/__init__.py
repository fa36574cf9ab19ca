"""Serving integrations (TorchServe, Triton). Each subpackage imports its server's libraries lazily."""
