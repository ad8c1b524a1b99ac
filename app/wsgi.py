"""gunicorn entry point: `gunicorn app.wsgi:server` (see gunicorn.conf.py; never --preload)."""
import os

from app import create_app

server = create_app().server
# Background jobs' handles are signed. Without a key dash keeps a generated one in the job store,
# which every process reads once: set DETR_SECRET_KEY (the same on every web machine) when that
# store may lose it (Redis without persistence restarting while web processes keep theirs).
if os.environ.get("DETR_SECRET_KEY"):
    server.secret_key = os.environ["DETR_SECRET_KEY"]
# dash serves a script only once this process has rendered a page that names it; the browser may
# fetch the page from one worker and its scripts from another: render the page once in each
server.test_client().get("/")
