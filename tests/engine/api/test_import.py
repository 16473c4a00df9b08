"""`POST /v1/recipients/import` and `tidings import recipients`: a file of recipients lands
whole, or not at all with every refused line named by number and field."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import col, select

from engine.api.app import create_app
from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Recipient
from tests.engine.conftest import ROOT, env_for
from tests.support import Server

NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv; charset=utf-8"}


def ndjson(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows)


def get(client: httpx.Client, rid: str) -> dict[str, Any] | None:
    response = client.get(f"/v1/recipients/{rid}")
    return response.json() if response.status_code == 200 else None


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_ndjson_file_lands_every_recipient_as_written(admin: httpx.Client) -> None:
    rows = [
        {"id": f"n-{i}", "email": f"n{i}@example.com", "locale": "zh-CN", "tags": ["vip"]}
        for i in range(3000)
    ]
    rows[7] |= {"timezone": "Asia/Shanghai", "annual_spend": 1200.5, "phone": "+8613800000000"}
    admin.put("/v1/recipients/n-5", json={"annual_spend": 999.0}).raise_for_status()

    answer = admin.post("/v1/recipients/import", content=ndjson(rows) + b"\n", headers=NDJSON)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"upserted": 3000, "lines": 3000}
    seventh = get(admin, "n-7")
    assert seventh is not None
    assert seventh["email"] == "n7@example.com"
    assert seventh["timezone"] == "Asia/Shanghai"
    assert seventh["annual_spend"] == 1200.5
    assert seventh["phone"] == "+8613800000000"
    assert seventh["tags"] == ["vip"]
    assert get(admin, "n-2999") is not None
    kept = get(admin, "n-5")
    assert kept is not None
    assert (kept["annual_spend"], kept["email"]) == (999.0, "n5@example.com")


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_csv_file_lands_with_lists_and_empty_cells_keeping_values(admin: httpx.Client) -> None:
    admin.put("/v1/recipients/c-1", json={"email": "old@example.com", "locale": "en"})
    text = (
        "\ufeffid,email,timezone,tags,annual_spend\r\n"
        "c-1,,Europe/Berlin,game.mobile|vip,250\r\n"
        'c-2,c2@example.com,Asia/Tokyo,"a,b",\r\n'
    )

    answer = admin.post("/v1/recipients/import", content=text.encode(), headers=CSV)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"upserted": 2, "lines": 3}
    first = get(admin, "c-1")
    assert first is not None
    assert first["email"] == "old@example.com"  # empty cell: left as it was
    assert first["locale"] == "en"
    assert first["timezone"] == "Europe/Berlin"
    assert first["tags"] == ["game.mobile", "vip"]
    assert first["annual_spend"] == 250
    second = get(admin, "c-2")
    assert second is not None
    assert second["tags"] == ["a,b"]


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_recipient_listed_twice_takes_both_lines_the_later_winning(admin: httpx.Client) -> None:
    rows = [
        {"id": "t-1", "email": "first@example.com", "locale": "en"},
        {"id": "t-1", "email": "second@example.com"},
    ]
    answer = admin.post("/v1/recipients/import", content=ndjson(rows), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    row = get(admin, "t-1")
    assert row is not None
    assert (row["email"], row["locale"]) == ("second@example.com", "en")


def test_refused_lines_are_each_named_and_nothing_is_written(admin: httpx.Client) -> None:
    body = (
        b'{"id": "r-1", "email": "r1@example.com"}\n'
        b'{"id": "r-2", "email": "not an address"}\n'
        b"{not json\n"
        b'{"id": "r-4", "timezone": "Mars/Olympus_Mons"}\n'
        b'{"id": "r-5", "favourite_colour": "red"}\n'
        b"[1, 2]\n"
        b'{"id": "r-7", "annual_spend": NaN}\n'
        b'{"email": "r8@example.com"}\n'
        b'{"id": "r-9", "locale": "fr\\u0000"}\n'
        b'{"id": "r-10", "webhook_url": "http://169.254.169.254/latest"}\n'
        b'{"id": "r-11"}\n'
    )

    answer = admin.post("/v1/recipients/import", content=body, headers=NDJSON)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_lines"
    assert error["refused"] == 9
    assert [(p["line"], p["field"]) for p in error["lines"]] == [
        (2, "email"),
        (3, "line"),
        (4, "timezone"),
        (5, "favourite_colour"),
        (6, "line"),
        (7, "line"),
        (8, "id"),
        (9, "locale"),
        (10, "webhook_url"),
    ]
    assert all(p["message"] for p in error["lines"])
    assert get(admin, "r-1") is None
    assert get(admin, "r-11") is None


def test_refused_csv_rows_are_named_by_line(admin: httpx.Client) -> None:
    text = "id,email,annual_spend\nk-1,k1@example.com,5\nk-2,k2@example.com,lots\nk-3,,1,2\n"
    answer = admin.post("/v1/recipients/import", content=text.encode(), headers=CSV)
    assert answer.status_code == 422, answer.text
    lines = answer.json()["error"]["lines"]
    assert [(p["line"], p["field"]) for p in lines] == [(3, "annual_spend"), (4, "line")]
    assert get(admin, "k-1") is None


@pytest.mark.parametrize(
    ("header", "field"),
    [("id,colour\n", "colour"), ("email\n", "id"), ("id,id\n", "id")],
)
def test_a_csv_header_naming_unknown_or_missing_columns_is_refused(
    admin: httpx.Client, header: str, field: str
) -> None:
    answer = admin.post("/v1/recipients/import", content=(header + "h-1\n").encode(), headers=CSV)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["lines"][0] == {
        "line": 1,
        "field": field,
        "message": answer.json()["error"]["lines"][0]["message"],
    }


def test_the_openapi_document_describes_the_import(admin: httpx.Client) -> None:
    document = admin.get("/v1/openapi.json").json()
    op = document["paths"]["/v1/recipients/import"]["post"]
    content = op["requestBody"]["content"]
    assert set(content) == {"application/x-ndjson", "text/csv"}
    line = content["application/x-ndjson"]["x-itemSchema"]["$ref"].rsplit("/", 1)[1]
    assert "id" in document["components"]["schemas"][line]["required"]
    assert {"200", "413", "415", "422"} <= set(op["responses"])
    detail = document["components"]["schemas"]["ErrorDetail"]["properties"]
    assert {"refused", "lines"} <= set(detail)


def test_an_empty_file_is_refused(admin: httpx.Client) -> None:
    answer = admin.post("/v1/recipients/import", content=b"\n\n", headers=NDJSON)
    assert answer.status_code == 422
    assert answer.json()["error"]["lines"][0]["field"] == "body"


def test_a_body_of_another_media_type_is_refused_naming_content_type(
    admin: httpx.Client,
) -> None:
    answer = admin.post("/v1/recipients/import", json=[{"id": "j-1"}])
    assert answer.status_code == 415
    assert answer.json()["error"]["field"] == "Content-Type"


def test_a_gzip_body_is_read_and_a_broken_one_is_a_400(admin: httpx.Client) -> None:
    body = gzip.compress(ndjson([{"id": "z-1"}]))
    headers = {**NDJSON, "Content-Encoding": "gzip"}
    assert admin.post("/v1/recipients/import", content=body, headers=headers).status_code == 200
    broken = admin.post("/v1/recipients/import", content=body[:-9] + b"x" * 9, headers=headers)
    assert broken.status_code == 400
    assert broken.json()["error"]["field"] == "Content-Encoding"
    assert "'gzip'" in broken.json()["error"]["message"]  # in our words, not the parser's


def test_a_file_over_the_byte_limit_is_a_413_and_writes_nothing(
    settings: Settings, db: Database
) -> None:
    app = create_app(settings.model_copy(update={"max_import_bytes": 1000}), database=db)
    server = Server(app).start()
    try:
        with db.session() as session:
            _, key = keys.create(session, name="import", scopes=["recipients", "read"])
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        with client:
            body = ndjson([{"id": f"big-{i}", "email": f"b{i}@example.com"} for i in range(40)])
            answer = client.post("/v1/recipients/import", content=body, headers=NDJSON)
            assert answer.status_code == 413
            assert answer.json()["error"]["field"] == "body"
            assert get(client, "big-0") is None
    finally:
        server.stop()


# Rows a property test mixes: valid ones, and ones refused naming a field.
VALID = st.fixed_dictionaries(
    {},
    optional={
        "email": st.from_regex(r"\A[a-z]{1,8}@example\.com\Z"),
        "locale": st.sampled_from(["en", "zh-CN", "ja"]),
        "timezone": st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York"]),
        "annual_spend": st.floats(min_value=0, max_value=1e6),
        "tags": st.lists(st.from_regex(r"\A[a-z.]{1,10}\Z"), max_size=3),
    },
)
REFUSED = st.sampled_from(
    [
        ({"email": "nobody"}, "email"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"annual_spend": -1}, "annual_spend"),
        ({"colour": "red"}, "colour"),
    ]
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(st.one_of(VALID.map(lambda r: (r, None)), REFUSED), min_size=1, max_size=30))
def test_a_file_lands_whole_or_not_at_all_with_exactly_its_bad_lines_named(
    admin: httpx.Client, lines: list[tuple[dict[str, Any], str | None]]
) -> None:
    prefix = uuid.uuid4().hex[:8]
    rows = [{"id": f"{prefix}-{i}", **fields} for i, (fields, _) in enumerate(lines)]
    bad = [(i + 1, field) for i, (_, field) in enumerate(lines) if field is not None]

    answer = admin.post("/v1/recipients/import", content=ndjson(rows), headers=NDJSON)

    landed = [get(admin, row["id"]) is not None for row in rows]
    if bad:
        assert answer.status_code == 422, answer.text
        named = [(p["line"], p["field"]) for p in answer.json()["error"]["lines"]]
        assert named == bad
        assert not any(landed)
    else:
        assert answer.status_code == 200, answer.text
        assert all(landed)
        for row in rows:
            stored = get(admin, row["id"])
            assert stored is not None
            for name in ("email", "locale", "timezone", "tags"):
                if name in row:
                    assert stored[name] == row[name]


def tidings(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.ops.cli", *args],
        env=env_for(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_imports_a_file_or_lists_its_refused_lines(
    admin: httpx.Client, settings: Settings, tmp_path: Path
) -> None:
    good = tmp_path / "users.csv"
    good.write_text("id,email,locale\ncli-1,cli1@example.com,en\ncli-2,,zh-CN\n")
    done = tidings(settings, "import", "recipients", str(good))
    assert done.returncode == 0, done.stderr
    assert "imported 2 recipients" in done.stdout
    assert get(admin, "cli-2") is not None

    bad = tmp_path / "more.ndjson"
    bad.write_bytes(ndjson([{"id": "cli-3"}, {"id": "cli-4", "email": "nope"}]))
    refused = tidings(settings, "import", "recipients", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:2: email:" in refused.stderr
    assert get(admin, "cli-3") is None


def landed(db: Database, prefix: str) -> int:
    """How many recipients whose id starts with `prefix` are stored."""
    with db.session() as session:
        found = session.scalar(
            select(func.count()).where(col(Recipient.id).startswith(prefix))  # type: ignore[arg-type]
        )
    return int(found or 0)


def people(prefix: str, count: int, **fields: Any) -> list[dict[str, Any]]:
    """`count` recipients of ~100 bytes a line: 20,000 make several batches of lines."""
    return [
        {"id": f"{prefix}-{i:06d}", "email": f"{prefix}{i}@example.com", "tags": ["game"], **fields}
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_bad_line_deep_in_a_large_file_is_named_exactly_and_nothing_is_written(
    admin: httpx.Client, db: Database
) -> None:
    rows = people("deep", 30_000)
    rows[21_456] |= {"timezone": "Mars/Olympus_Mons"}
    rows[29_998] |= {"annual_spend": -5}
    body = ndjson(rows).replace(b'"deep-025000"', b'"deep-025000",', 1)

    answer = admin.post("/v1/recipients/import", content=body, headers=NDJSON)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["refused"] == 3
    assert [(p["line"], p["field"]) for p in error["lines"]] == [
        (21_457, "timezone"),
        (25_001, "line"),
        (29_999, "annual_spend"),
    ]
    put = admin.put("/v1/recipients/deep-x", json={"timezone": "Mars/Olympus_Mons"})
    assert error["lines"][0]["message"] == put.json()["error"]["message"]
    # About 14,000 lines (1 MB) were written before the first refused line was read.
    assert landed(db, "deep-") == 0


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_bad_row_deep_in_a_large_csv_file_is_named_by_its_line(
    admin: httpx.Client, db: Database
) -> None:
    rows = [f"csvdeep-{i:06d},csv{i}@example.com,game|vip,{i % 100}" for i in range(12_000)]
    rows[99] = 'csvdeep-000099,,"two\nlines",1'  # a quoted cell over two lines
    rows[8_000] = "csvdeep-008000,csv8000@example.com,game,lots"
    rows[11_000] = "csvdeep-011000,csv11000@example.com,game"
    text = "id,email,tags,annual_spend\n" + "\n".join(rows) + "\n"

    answer = admin.post("/v1/recipients/import", content=text.encode(), headers=CSV)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    # Row i is on line i + 2 (after the header), one more after the two-line cell.
    assert [(p["line"], p["field"]) for p in error["lines"]] == [
        (8_003, "annual_spend"),
        (11_003, "line"),
    ]
    assert error["lines"][1]["message"] == "3 cells where the header names 4 columns"
    assert landed(db, "csvdeep-") == 0


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_file_imported_again_updates_every_recipient_and_keeps_fields_it_leaves_out(
    admin: httpx.Client, db: Database
) -> None:
    first = people("again", 20_000, name="First", locale="en")
    answer = admin.post("/v1/recipients/import", content=ndjson(first), headers=NDJSON)
    assert answer.status_code == 200, answer.text

    second = people("again", 20_500, tags=["vip"])
    for row in second:
        del row["email"]
    # The same recipient again 19,000 lines later, in another batch of lines: it wins.
    second.append({"id": "again-000007", "email": "later@example.com", "locale": "ja"})
    answer = admin.post("/v1/recipients/import", content=ndjson(second), headers=NDJSON)

    assert answer.status_code == 200, answer.text
    assert answer.json()["lines"] == 20_501
    assert landed(db, "again-") == 20_500
    updated = get(admin, "again-019999")
    assert updated is not None
    assert (updated["name"], updated["email"], updated["tags"]) == (
        "First",
        "again19999@example.com",
        ["vip"],
    )
    new = get(admin, "again-020400")
    assert new is not None
    assert (new["name"], new["email"], new["tags"]) == (None, None, ["vip"])
    twice = get(admin, "again-000007")
    assert twice is not None
    assert (twice["email"], twice["locale"], twice["tags"]) == ("later@example.com", "ja", ["vip"])


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_every_field_of_a_line_is_stored_as_a_put_of_it_stores_it(admin: httpx.Client) -> None:
    fields = {
        "name": "Kaka 卡卡",
        "attributes": {"level": 42, "region": "华东", "vip": True, "stats": {"wins": 1.5}},
        "email": "kaka@example.com",
        "phone": "+8613800000000",
        "push_tokens": ["token-a", "token-b"],
        "webhook_url": "https://hooks.example.com/kaka",
        "timezone": "Asia/Shanghai",
        "locale": "zh-CN",
        "annual_spend": 1234.5,
        "last_active_at": "2026-03-01T20:15:00+08:00",
        "tags": ["game.mobile", "vip"],
    }
    text = "id,annual_spend,tags,push_tokens\ncsv-1,1234.5,game.mobile|vip,token-a|token-b\n"
    admin.put("/v1/recipients/by-put", json=fields).raise_for_status()

    answers = [
        admin.post(
            "/v1/recipients/import", content=ndjson([{"id": "by-file", **fields}]), headers=NDJSON
        ),
        admin.post("/v1/recipients/import", content=text.encode(), headers=CSV),
    ]

    assert [answer.status_code for answer in answers] == [200, 200]
    by_put, by_file, by_csv = (get(admin, rid) for rid in ("by-put", "by-file", "csv-1"))
    assert by_put is not None and by_file is not None and by_csv is not None
    stamps = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in by_file.items() if k not in stamps} == {
        k: v for k, v in by_put.items() if k not in stamps
    }
    assert (by_csv["annual_spend"], by_csv["tags"], by_csv["push_tokens"]) == (
        1234.5,
        ["game.mobile", "vip"],
        ["token-a", "token-b"],
    )
