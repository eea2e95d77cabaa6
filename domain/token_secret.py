"""The secret that signs stream tokens, kept as an event-sourced aggregate.

Every server process and machine must verify the tokens any of them issued, so the
secret lives in the event store, in the stream ``stream-token-secret``: one
``token_secret_created`` event, appended once with expected version 0. Processes that
race to create it all append at version 0; the first writer wins and the others read
its secret. ``PULSE_TOKEN_SECRET``, when set, is used instead (and nothing is stored).

Anyone who can read the event store can read this secret; such a reader can already
read every event, and a token only grants ``read`` for a key that is not revoked.
"""

from __future__ import annotations

import contextlib
import secrets

from domain.errors import ConcurrencyError
from domain.events import Event, utc_now
from domain.ports import EventStore

TOKEN_SECRET_STREAM = "stream-token-secret"
TOKEN_SECRET_CREATED = "token_secret_created"


def load_or_create_secret(store: EventStore) -> bytes:
    """The store's token-signing secret, created on first use."""
    events = store.read_stream(TOKEN_SECRET_STREAM)
    if not events:
        created = Event(
            type=TOKEN_SECRET_CREATED, occurred_at=utc_now(), properties={"secret": secrets.token_urlsafe(32)}
        )
        # Another process may create it first (ConcurrencyError): its secret is the one.
        with contextlib.suppress(ConcurrencyError):
            store.append(TOKEN_SECRET_STREAM, [created], expected_version=0)
        events = store.read_stream(TOKEN_SECRET_STREAM)
    return str(events[0].properties["secret"]).encode()
