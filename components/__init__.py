"""Pure layout and figure builders (no model code)."""
