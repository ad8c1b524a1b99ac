"""gunicorn entry point: `gunicorn app.wsgi:server` (see gunicorn.conf.py; never --preload)."""
from app import create_app

server = create_app().server
# dash serves a script only once this process has rendered a page that names it; the browser may
# fetch the page from one worker and its scripts from another: render the page once in each
server.test_client().get("/")
