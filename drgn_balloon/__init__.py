"""drgn-balloon."""
