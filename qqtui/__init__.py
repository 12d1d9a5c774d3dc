"""qqtui: mission control for parallel runs."""

__version__ = "0.1.0"
