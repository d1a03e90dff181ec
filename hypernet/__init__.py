"""loragen hypernet."""
