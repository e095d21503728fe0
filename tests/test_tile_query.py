"""The tile URL grammar's one parser (``parse_tile_query``) and its inverse (``query_string``): round
trips, canonical order, coded 400s naming the field, and the ETag part each value adds."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from imagelib.errors import ImagelibError
from imagelib.tiling.http import TileQuery, etag, parse_tile_query, query_string
from imagelib.tiling.scale import Style

CHAIN = [{"op": "gaussian", "sigma": 2}]


def parse(query: str) -> TileQuery:
    values = dict(parse_qsl(query.removeprefix("?"), keep_blank_values=True))
    return parse_tile_query(values.get, 8192)


@pytest.mark.parametrize(
    ("chain", "style", "axis", "index"),
    [
        (None, Style(), None, None),
        (CHAIN, Style(), None, None),
        (None, Style(bands=(4, 3, 2)), None, None),
        (None, Style(rescale=(0.5, 200.0)), None, None),
        (None, Style(bands=(1, 2, 3), rescale=((0.0, 1.0), (-3.5, 2.0), (10.0, 1e6))), None, None),
        (CHAIN, Style(bands=(2,), rescale=(1.0, 9.0), colormap="viridis"), "z", 7),
        (None, Style(), None, 0),
    ],
)
def test_round_trip(chain: list | None, style: Style, axis: str | None, index: int | None) -> None:
    text = query_string(chain, style, axis, index)
    parsed = parse(text)
    assert (parsed.style, parsed.axis, parsed.index) == (style, axis, index)
    assert parsed.chain == (None if chain is None else [{"op": "gaussian", "sigma": 2.0, "truncate": 4.0}])
    assert query_string(parsed.chain, parsed.style, parsed.axis, parsed.index) == text  # canonical


def test_canonical_text() -> None:
    assert query_string() == ""
    text = query_string(CHAIN, Style((3, 2, 1), (0, 255), None), "z", 4)
    names = [name for name, _ in parse_qsl(text[1:])]
    assert names == ["chain", "bands", "rescale", "axis", "index"]
    assert "bands=3%2C2%2C1&rescale=0%2C255&axis=z&index=4" in text and "{" not in text


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("bands=0", "BAND_INDEX_INVALID", "bands"),
        ("bands=1,2", "BAND_INDEX_INVALID", "bands"),
        ("bands=1,2,3,4", "BAND_INDEX_INVALID", "bands"),
        ("bands=a", "USAGE", "bands"),
        ("bands=1.5", "USAGE", "bands"),
        ("bands=-1", "USAGE", "bands"),
        ("rescale=1", "USAGE", "rescale"),
        ("rescale=5,5", "USAGE", "rescale"),
        ("rescale=nan,1", "USAGE", "rescale"),
        ("rescale=0,1;0,2", "USAGE", "rescale"),
        ("bands=1&rescale=0,1;0,2;0,3", "USAGE", "rescale"),
        ("colormap=nope", "USAGE", "colormap"),
        ("bands=1,2,3&colormap=gray", "USAGE", "colormap"),
        ("axis=w", "USAGE", "axis"),
        ("index=-1", "USAGE", "index"),
        ("index=99999999999", "USAGE", "index"),
        ("chain=[1", "CHAIN_INVALID", "chain"),
        ('chain=[{"op":"nope"}]', "OP_UNKNOWN", "chain[0].op"),
    ],
)
def test_malformed_values_are_coded_400s(query: str, code: str, field: str) -> None:
    with pytest.raises(ImagelibError) as err:
        parse(query)
    assert (err.value.code, err.value.spec.http, err.value.field) == (code, 400, field)


def test_the_etag_follows_every_value() -> None:
    tags = {
        etag("v" * 32, "dzi", (9, 0, 0), "png", parse(query))
        for query in [
            "",
            "bands=3,2,1",
            "rescale=0,9",
            "bands=1&colormap=gray",
            "bands=1",
            "index=2",
            "axis=z&index=2",
            f"chain={query_string(CHAIN)[7:]}",
        ]
    }
    assert len(tags) == 8
    # the chain alone (no style, no slice) keeps the tag a bare chain list gives
    assert etag("v" * 32, "dzi", (9, 0, 0), "png", parse(query_string(CHAIN))) == etag(
        "v" * 32, "dzi", (9, 0, 0), "png", CHAIN
    )
