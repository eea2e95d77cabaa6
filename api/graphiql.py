"""GraphiQL without a CDN: strawberry's page, its assets served by Pulse.

strawberry's GraphiQL HTML loads React, GraphiQL and the explorer plugin from unpkg.com.
The same files, byte for byte, are vendored in api/static/vendor/graphiql/ (see its README) under
the unpkg paths, so rewriting the URL prefix is enough and the page's SRI hashes still hold.
"""

from __future__ import annotations

import functools
from pathlib import Path

from flask import Blueprint
from strawberry.http.ides import get_graphql_ide_html

CDN_PREFIX = "https://unpkg.com/"
ASSETS_URL = "/static/graphiql/"
ASSETS_DIR = Path(__file__).resolve().parent / "static" / "vendor" / "graphiql"

graphiql_assets = Blueprint(
    "graphiql_assets", __name__, static_folder=str(ASSETS_DIR), static_url_path=ASSETS_URL.rstrip("/")
)


@functools.cache
def graphiql_html() -> str:
    """strawberry's GraphiQL page with every unpkg.com URL pointing at Pulse's own copy."""
    return get_graphql_ide_html("graphiql").replace(CDN_PREFIX, ASSETS_URL)
