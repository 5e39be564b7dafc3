"""The venue contract (lab/venues/contract.py) and the one registry: every registered venue
provides what the recorder, connectors, verify, replay and the CLI read, through the registry only."""
from __future__ import annotations

import pytest

import lab
from lab.core.errors import UnknownVenue, VenueError
from lab.recorder.connector import LiveConnector
from lab.sync.normalizer import Normalizer
from lab.venues import registry
from lab.venues.contract import Option, Venue
from labcli import lab as run_lab

REQUIRED = ("name", "default_rest_url", "default_ws_url", "instruments_path")


@pytest.mark.parametrize("name", registry.venues())
def test_every_adapter_fulfils_the_contract(name):
    cls = registry.adapter_class(name)
    assert issubclass(cls, Venue) and cls.name == name
    for attr in REQUIRED:
        assert isinstance(getattr(cls, attr), str) and getattr(cls, attr), attr
    venue = cls()
    for method in ("depth_path", "subscribe_frames", "parse_instruments", "normalizer"):
        assert getattr(type(venue), method) is not getattr(Venue, method), f"{name} does not implement {method}"
    n = venue.normalizer()
    assert isinstance(n, Normalizer) and n.venue == name
    assert venue.sequence_scope in ("symbol", "connection", "channel", "counter")
    assert all(isinstance(f, bytes) for f in venue.subscribe_frames(["A/B"], venue.check_depth(0)))
    assert isinstance(venue.describe(), dict)
    for opt in cls.options:  # every declared option is accepted with each of its choices
        for choice in opt.choices:
            assert isinstance(registry.adapter(name, **{opt.key: choice}), cls)
    if cls.simulator:
        from lab.venues.simulator import get_plugin_class

        assert get_plugin_class(name) is registry.simulator_class(name)


def test_unknown_venue_and_options_are_one_clear_error():
    with pytest.raises(UnknownVenue, match="unknown venue 'nope'"):
        registry.adapter("nope")
    name = registry.venues()[0]
    with pytest.raises(VenueError, match="unknown option 'colour'"):
        registry.adapter(name, colour="blue")


class _Capped(Venue):
    name = "capped"
    max_streams_per_connection = 2
    options = (Option("speed", "how fast", ("slow", "fast")),)


def test_connection_plan_splits_at_the_stream_cap_and_options_are_checked():
    v = _Capped()
    assert v.connection_plan(["a", "b", "c", "d", "e"]) == [["a", "b"], ["c", "d"], ["e"]]
    assert v.connection_plan(["a"]) == [["a"]]
    assert Venue.connection_plan(v, []) == [[]]
    assert _Capped.with_options({"speed": "fast"}).option_values == {"speed": "fast"}
    with pytest.raises(VenueError, match="speed='warp' not supported .valid: slow, fast."):
        _Capped.with_options({"speed": "warp"})


def test_connectors_come_from_the_registry():
    names = lab.list_connectors()
    assert set(registry.venues()) <= set(names)
    extra = {n: v for n, (v, ref) in registry.connectors().items() if ref}
    assert set(extra) <= set(names)
    for name, venue in extra.items():  # an extra connector is the venue's live connector plus its mixin
        cls = registry.connector_mixin(registry.connectors()[name][1])
        assert not issubclass(cls, LiveConnector)  # the venue folder does not import the live side
    with pytest.raises(UnknownVenue, match="unknown connector 'nope'"):
        lab.get_connector("nope")


def test_record_refuses_an_option_the_venue_does_not_have_before_starting_anything(tmp_path):
    venue = registry.embedded_venue()
    r = run_lab("record", "--venue", venue, "--api", "v9", "--duration", "1s", "--out", str(tmp_path / "c"), check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"lab: error: {venue}: unknown option 'api' (options: none)"]
    assert not (tmp_path / "c").exists()
    r = run_lab("record", "--venue", venue, "--opt", "novalue", "--out", str(tmp_path / "c"), check=False)
    assert r.returncode == 1 and "expected KEY=VALUE" in r.stderr


def test_lab_venues_json_lists_declared_options():
    import json

    r = run_lab("venues", "--json")
    rows = {d["venue"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert sorted(rows) == registry.venues()
    for name, row in rows.items():
        declared = registry.adapter_class(name).options
        assert sorted(row.get("options", {})) == sorted(o.key for o in declared)
