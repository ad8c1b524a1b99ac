"""gunicorn entry point: `gunicorn app.wsgi:server` (see gunicorn.conf.py; never --preload)."""
from app import create_app

server = create_app().server
