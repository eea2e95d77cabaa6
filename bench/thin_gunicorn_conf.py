"""gunicorn settings of the thin baseline (bench/thin_ingest_app.py) that `pulse serve` sets
too, so the two figures differ by the app alone: the keep-alive cap (api/keepalive.py), or
the baseline's figure would depend on where its 4 connections land (one worker: one GIL)."""

import os

from api.keepalive import cap_requests_per_connection
from domain.settings import Settings

pre_request = cap_requests_per_connection(Settings.from_env(os.environ).keepalive_requests)
