"""loragen api."""
