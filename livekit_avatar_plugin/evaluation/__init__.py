"""Measurements of what an avatar shows, taken back from its rendered frames."""
