"""Thin Dash callbacks: read inputs, call core/, hand results to components/."""
