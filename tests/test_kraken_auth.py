"""Kraken private REST: the official API-Sign vector, key files, nonces across threads and
processes, Balance/AddOrder against the simulator, and no secret anywhere it should not be."""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import warnings

import pytest

from lab import get_connector, list_connectors
from lab.venues.kraken import auth as A
from lab.venues.kraken.protocol import sign
from lab.venues.kraken.sim import SIM_API_KEY, SIM_API_SECRET
from lab.venues.simulator import SimulatorThread

VECTOR_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
VECTOR_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
VECTOR_SIGN = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="


def test_official_api_sign_vector():
    assert sign("/0/private/AddOrder", VECTOR_BODY, "1616492376594", VECTOR_SECRET) == VECTOR_SIGN


def write_keys(path, key=SIM_API_KEY, secret=SIM_API_SECRET, mode=0o600):
    path.write_text(f"# lab keys\n\nBINANCE_API_KEY=your_binance_key\nKRAKEN_API_KEY={key}\nKRAKEN_API_SECRET = {secret}\nCOINBASE_API_KEY=\n")
    os.chmod(path, mode)
    return str(path)


def test_properties_parsing_and_lookup_order(tmp_path, monkeypatch):
    props = A.parse_properties("# c\nA=1\nB=\nC=your_key_here\n  D = x=y  \nnot a pair\n")
    assert props == {"A": "1", "D": "x=y"}
    explicit = write_keys(tmp_path / "explicit.properties", "K1", "S1")
    via_env = write_keys(tmp_path / "env.properties", "K2", "S2")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    write_keys(cwd / "api_keys.properties", "K3", "S3")
    env = {"LAB_API_KEYS": via_env, "KRAKEN_API_KEY": "K4", "KRAKEN_API_SECRET": "S4"}
    assert A.load_credentials(explicit, cwd=str(cwd), env=env).key == "K1"
    assert A.load_credentials(None, cwd=str(cwd), env=env).key == "K2"
    assert A.load_credentials(None, cwd=str(cwd), env={"KRAKEN_API_KEY": "K4", "KRAKEN_API_SECRET": "S4"}).key == "K3"
    assert A.load_credentials(None, cwd=str(tmp_path), env={"KRAKEN_API_KEY": "K4", "KRAKEN_API_SECRET": "S4"}).key == "K4"
    placeholders = tmp_path / "p.properties"
    write_keys(placeholders, "your_kraken_key", "your_kraken_secret")
    with pytest.raises(A.CredentialsNotFound):
        A.load_credentials(str(placeholders), cwd=str(tmp_path), env={})
    with pytest.raises(A.CredentialsNotFound):
        A.load_credentials(str(tmp_path / "missing"), cwd=str(tmp_path), env={})


def test_world_readable_keys_file_warns(tmp_path):
    path = write_keys(tmp_path / "k.properties", mode=0o644)
    with pytest.warns(A.KeysFileWarning, match="chmod 600"):
        A.load_credentials(path, env={})
    path = write_keys(tmp_path / "k2.properties", mode=0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.load_credentials(path, env={})


def test_nonces_strictly_increase_across_threads_and_processes(tmp_path):
    counter = A.NonceCounter("key-x", str(tmp_path))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda _: counter.next(), range(400)))
    assert len(set(threaded)) == 400
    code = (
        "import sys; from lab.venues.kraken.auth import NonceCounter;"
        "c = NonceCounter('key-x', sys.argv[1]); print(' '.join(str(c.next()) for _ in range(300)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    per_process = [list(map(int, p.communicate(timeout=60)[0].split())) for p in procs]
    everything = threaded + [n for seq in per_process for n in seq]
    assert len(set(everything)) == len(everything) == 1300
    for seq in per_process:
        assert seq == sorted(seq) and len(set(seq)) == len(seq)
    assert min(n for seq in per_process for n in seq) > 0
    # another key has its own counter
    assert A.NonceCounter("key-y", str(tmp_path)).path != counter.path


@pytest.fixture()
def sim():
    with SimulatorThread("kraken", seed=7, rate=200) as s:
        yield s


def test_balance_and_add_order_against_the_simulator(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_NONCE_DIR", str(tmp_path / "nonces"))
    keys = write_keys(tmp_path / "api_keys.properties")
    assert "kraken_auth" in list_connectors()
    c = get_connector("kraken_auth", keys=keys, rest_url=sim.url)
    assert c.get_account_balance()["XXBT"] == "1011.1908877900"
    result = c.place_order("XBTUSD", "buy", "limit", 1.25, price=37500)
    assert result == {"descr": {"order": "buy 1.25000000 XBTUSD @ limit 37500.0"}}  # validate: no txid
    assert "txid" not in c.place_order("XBTUSD", "sell", "market", "0.01")
    with pytest.raises(A.KrakenAPIError) as err:
        c.place_order("XBTUSD", "buy", "market", "0.00001")
    assert err.value.errors == ["EOrder:Order minimum not met"]
    with pytest.raises(A.KrakenAPIError, match="Unknown asset pair"):
        c.place_order("NOPE", "buy", "market", "1")
    with pytest.raises(ValueError, match="more than 1 decimals"):
        c.place_order("XBTUSD", "buy", "limit", "1", price="37500.05")
    # live needs validate=False, allow_live AND the environment variable
    with pytest.raises(A.LiveTradingDisabled):
        c.place_order("XBTUSD", "buy", "market", "0.01", validate=False)
    live = get_connector("kraken_auth", keys=keys, rest_url=sim.url, allow_live=True)
    with pytest.raises(A.LiveTradingDisabled):
        live.place_order("XBTUSD", "buy", "market", "0.01", validate=False)
    monkeypatch.setenv("LAB_ALLOW_LIVE_ORDERS", "1")
    assert live.place_order("XBTUSD", "buy", "market", "0.01", validate=False)["txid"][0].startswith("O")
    for text in (repr(c), str(c), repr(live), repr(c._credentials)):
        assert SIM_API_KEY not in text and SIM_API_SECRET not in text


def test_simulator_rejects_bad_key_signature_and_nonce(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_NONCE_DIR", str(tmp_path / "nonces"))
    bad_key = get_connector("kraken_auth", credentials=A.Credentials("nope", SIM_API_SECRET), rest_url=sim.url)
    with pytest.raises(A.KrakenAPIError, match="EAPI:Invalid key"):
        bad_key.get_account_balance()
    other_secret = "a2V5" * 22  # valid base64, wrong secret
    bad_sig = get_connector("kraken_auth", credentials=A.Credentials(SIM_API_KEY, other_secret), rest_url=sim.url)
    with pytest.raises(A.KrakenAPIError, match="EAPI:Invalid signature"):
        bad_sig.get_account_balance()
    good = get_connector("kraken_auth", credentials=A.Credentials(SIM_API_KEY, SIM_API_SECRET), rest_url=sim.url)
    good.get_account_balance()
    # a nonce at or below the last accepted one: simulate another client with a stale counter
    stale = get_connector("kraken_auth", credentials=A.Credentials(SIM_API_KEY, SIM_API_SECRET), rest_url=sim.url,
                          nonce_dir=str(tmp_path / "other"))
    stale._nonces.next = lambda: 5
    with pytest.raises(A.KrakenAPIError, match="EAPI:Invalid nonce") as err:
        stale.get_account_balance()
    assert SIM_API_SECRET not in str(err.value) and SIM_API_KEY not in str(err.value)
