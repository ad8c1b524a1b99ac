"""Model-side logic of the dashboard: no Dash imports here."""
