"""loragen meta."""
