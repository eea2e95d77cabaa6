"""Datasets over REST and dataset widgets: upload (JSON or multipart, CSV or JSON rows),
types inferred and overridden, refused whole with the row and column named, replaced,
exported, protected from deletion while a widget shows them; and widget CSV exports that
equal the widget's data, with the dashboard's visibility."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from flask.testing import FlaskClient

from bootstrap import Pulse
from domain import datasets as parsing
from domain.clock import FrozenClock
from domain.keys import create_key
from tests.api.conftest import Keys, bearer, http_layer_only
from tests.api.test_dashboards_graphql import create, fetch, gql, ok, publish

PRICES = "product,price,organic,since\nlatte,4.20,yes,2026-01-05\nespresso,2.80,no,2026-02-01\nmuffin,,no,\n"

pytestmark = http_layer_only


@pytest.fixture
def editor(pulse: Pulse) -> str:
    return create_key(pulse.store, "designer", ["editor"])[1]


def upload(client: FlaskClient, secret: str | None, body: dict[str, Any], method: str = "POST", name: str = ""):
    path = "/v1/datasets" + (f"/{name}" if name else "")
    return client.open(path, method=method, json=body, headers=bearer(secret) if secret else {})


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_a_csv_upload_infers_types_and_exports_what_was_stored(client: FlaskClient, editor: str, keys: Keys) -> None:
    created = upload(client, editor, {"name": "prices", "data": PRICES})
    assert created.status_code == 201, created.json
    assert created.json["columns"] == [
        {"name": "product", "type": "TEXT"},
        {"name": "price", "type": "NUMBER"},
        {"name": "organic", "type": "BOOLEAN"},
        {"name": "since", "type": "DATETIME"},
    ]
    assert created.json["rows"] == 3 and created.json["updatedBy"] == "designer"
    assert client.get("/v1/datasets/prices", headers=bearer(keys.read)).json["rows"] == 3
    exported = client.get("/v1/datasets/prices.csv", headers=bearer(keys.read))
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert rows_of(exported.get_data(as_text=True)) == [
        ["product", "price", "organic", "since"],
        ["latte", "4.2", "true", "2026-01-05T00:00:00"],
        ["espresso", "2.8", "false", "2026-02-01T00:00:00"],
        ["muffin", "", "false", ""],
    ]


def test_multipart_json_rows_with_a_type_override(client: FlaskClient, editor: str) -> None:
    data = {
        "name": "stores",
        "types": '{"code": "TEXT"}',
        "file": (io.BytesIO(b'[{"code": "001", "seats": 12}, {"code": "002", "seats": 30}]'), "stores.json"),
    }
    created = client.post("/v1/datasets", data=data, headers=bearer(editor), content_type="multipart/form-data")
    assert created.status_code == 201, created.json
    assert created.json["columns"] == [{"name": "code", "type": "TEXT"}, {"name": "seats", "type": "NUMBER"}]


def test_a_bad_row_refuses_the_whole_upload_naming_row_and_column(client: FlaskClient, editor: str, keys: Keys) -> None:
    data = PRICES + "scone,cheap,no,2026-03-01\n"
    bad = upload(client, editor, {"name": "prices", "data": data, "types": {"price": "NUMBER"}})
    assert bad.status_code == 422
    error = bad.json["errors"][0]
    assert error["field"] == "rows[4].price" and "row 4, column 'price'" in error["message"]
    assert client.get("/v1/datasets/prices", headers=bearer(keys.read)).status_code == 404  # nothing stored
    ragged = upload(client, editor, {"name": "prices", "data": "a,b\n1,2\n3\n"})
    assert ragged.status_code == 422 and ragged.json["errors"][0]["field"] == "rows[2]"
    unknown = upload(client, editor, {"name": "prices", "data": PRICES, "types": {"cost": "NUMBER"}})
    assert unknown.status_code == 422 and unknown.json["errors"][0]["field"] == "types.cost"


def test_size_limits_are_413_naming_where(client: FlaskClient, editor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "MAX_ROWS", 2)
    too_many = upload(client, editor, {"name": "prices", "data": PRICES})
    assert too_many.status_code == 413 and "row 3" in too_many.json["message"]
    huge = client.post(
        "/v1/datasets", data=b"a\n" + b"1\n" * (3 * 2**20), headers={**bearer(editor), "Content-Type": "text/csv"}
    )
    assert huge.status_code == 413


def test_post_creates_put_replaces(client: FlaskClient, editor: str, keys: Keys) -> None:
    assert upload(client, editor, {"name": "prices", "data": PRICES}).status_code == 201
    again = upload(client, editor, {"name": "prices", "data": PRICES})
    assert again.status_code == 409 and "PUT" in again.json["message"]
    replaced = upload(client, editor, {"data": "product,price\nlatte,4.5\n"}, "PUT", "prices")
    assert replaced.status_code == 200 and replaced.json["rows"] == 1
    assert rows_of(client.get("/v1/datasets/prices.csv", headers=bearer(keys.read)).get_data(as_text=True))[1] == [
        "latte",
        "4.5",
    ]
    assert upload(client, editor, {"data": PRICES}, "PUT", "nope").status_code == 404


def test_scopes(client: FlaskClient, keys: Keys, editor: str) -> None:
    assert upload(client, None, {"name": "prices", "data": PRICES}).status_code == 401
    assert upload(client, keys.read, {"name": "prices", "data": PRICES}).status_code == 403
    assert upload(client, editor, {"name": "prices", "data": PRICES}).status_code == 201
    assert client.get("/v1/datasets/prices", headers=bearer(keys.ingest)).status_code == 403
    assert client.get("/v1/datasets/prices").status_code == 401


TABLE = {
    "id": "prices",
    "kind": "TABLE",
    "title": "Prices",
    "source": {"kind": "DATASET", "dataset": "prices", "fields": ["product", "price"]},
}


def test_a_dataset_in_use_cannot_be_deleted(client: FlaskClient, editor: str, keys: Keys) -> None:
    assert upload(client, editor, {"name": "prices", "data": PRICES}).status_code == 201
    ok(create(client, editor, "menu", [TABLE]))
    refused = client.delete("/v1/datasets/prices", headers=bearer(editor))
    assert refused.status_code == 409 and refused.json["widgets"] == ["menu/prices"]
    assert "menu/prices" in refused.json["message"]
    ok(gql(client, 'mutation { removeWidget(slug: "menu", widgetId: "prices") { slug } }', editor))
    assert [d["name"] for d in client.get("/v1/datasets", headers=bearer(keys.read)).json["datasets"]] == ["prices"]
    assert client.delete("/v1/datasets/prices", headers=bearer(editor)).status_code == 200
    assert client.get("/v1/datasets/prices", headers=bearer(keys.read)).status_code == 404
    assert client.get("/v1/datasets", headers=bearer(keys.read)).json == {"datasets": []}
    # Uploaded again after its deletion: listed once.
    assert upload(client, editor, {"name": "prices", "data": PRICES}).status_code == 201
    assert [d["name"] for d in client.get("/v1/datasets", headers=bearer(keys.read)).json["datasets"]] == ["prices"]


def test_widget_csv_equals_the_widget_data_with_the_dashboards_visibility(
    client: FlaskClient, editor: str, keys: Keys
) -> None:
    assert upload(client, editor, {"name": "prices", "data": PRICES}).status_code == 201
    ok(create(client, editor, "menu", [TABLE], visibility="PUBLIC"))
    ok(create(client, editor, "costs", [TABLE], visibility="PRIVATE"))
    for slug in ("menu", "costs"):
        ok(publish(client, editor, slug))
    query = '{ dashboard(slug: "menu") { widgets { data { table { columns { name type } rows } } } } }'
    table = ok(gql(client, query))["dashboard"]["widgets"][0]["data"]["table"]
    assert table == {
        "columns": [{"name": "product", "type": "TEXT"}, {"name": "price", "type": "NUMBER"}],
        "rows": [["latte", 4.2], ["espresso", 2.8], ["muffin", None]],
    }
    exported = client.get("/v1/dashboards/menu/widgets/prices.csv")  # no key: public
    assert exported.status_code == 200
    assert rows_of(exported.get_data(as_text=True)) == [
        ["product", "price"],
        *[["" if v is None else str(v) for v in row] for row in table["rows"]],
    ]
    hidden = client.get("/v1/dashboards/costs/widgets/prices.csv")
    nobody = client.get("/v1/dashboards/nothing/widgets/prices.csv")
    assert hidden.status_code == nobody.status_code == 404
    assert client.get("/v1/dashboards/costs/widgets/prices.csv", headers=bearer(keys.read)).status_code == 200
    assert fetch(client, "menu")["data"]["dashboard"]["slug"] == "menu"


def test_an_uploaded_image_is_served_by_its_id_and_svg_is_refused(client: FlaskClient, editor: str) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    data = {"file": (io.BytesIO(png), "logo.png")}
    created = client.post("/v1/images", data=data, headers=bearer(editor), content_type="multipart/form-data")
    assert created.status_code == 201 and created.json["contentType"] == "image/png"
    served = client.get(created.json["url"])  # no key: whoever has the id
    assert served.status_code == 200 and served.data == png and served.mimetype == "image/png"
    svg = client.post(
        "/v1/images", data=b"<svg onload='alert(1)'/>", headers={**bearer(editor), "Content-Type": "image/png"}
    )
    assert svg.status_code == 422 and svg.json["errors"][0]["field"] == "file"
    widget = {"id": "logo", "kind": "IMAGE", "title": "Logo", "imageUrl": created.json["url"], "alt": "Our beans"}
    assert ok(create(client, editor, "brand", [widget]))["createDashboard"]["slug"] == "brand"


def test_a_dynamic_dataset_is_a_saved_query_answered_when_read(
    client: FlaskClient, editor: str, keys: Keys, pulse: Pulse, clock: FrozenClock
) -> None:
    from bootstrap import bootstrap
    from domain.clock import now_utc
    from domain.events import Event
    from domain.metrics import define_metric, validate_metric

    define_metric(pulse.store, validate_metric("revenue", "sale", "sum", "amount", ["store"], []))
    now = now_utc(clock)  # the app's clock
    pulse.store.ingest([Event(type="sale", occurred_at=now, properties={"amount": 5, "store": "harbor"})])
    own = bootstrap(pulse.settings, clock=clock)
    own.worker().catch_up()
    own.close()
    query = {"kind": "BREAKDOWN", "metric": "revenue", "dimension": "store"}
    created = upload(client, editor, {"name": "by-store", "query": query})
    assert created.status_code == 201 and created.json["query"]["metric"] == "revenue"
    bad = upload(client, editor, {"name": "broken", "query": {"kind": "BREAKDOWN", "metric": "revenue"}})
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "query.dimension"
    exported = client.get("/v1/datasets/by-store.csv", headers=bearer(keys.read)).get_data(as_text=True)
    assert rows_of(exported) == [["key", "value", "count"], ["harbor", "5", "1"]]
    widget = {
        "id": "stores",
        "kind": "TABLE",
        "title": "By store",
        "source": {"kind": "DATASET", "dataset": "by-store"},
    }
    ok(create(client, editor, "stores", [widget]))
    shown = ok(gql(client, '{ dashboard(slug: "stores") { widgets { data { table { rows } } } } }', keys.read))
    assert shown["dashboard"]["widgets"][0]["data"]["table"]["rows"] == [["harbor", 5.0, 1]]
