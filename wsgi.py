"""WSGI entry point for gunicorn and Zappa: settings come from PULSE_* variables."""

from api.app import create_app

app = create_app()
