"""block layer."""
