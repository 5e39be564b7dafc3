"""Every misconfiguration is a non-zero exit, one `lab: error: ...` line on stderr, no traceback.

Each case runs the real CLI as a subprocess (against the real simulators on loopback where a
venue is needed)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from lab.venues.simulator import SimulatorThread

LAB = [sys.executable, "-m", "lab.cli"]


def lab(*args, timeout=60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*LAB, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_error_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    err = p.stderr.strip()
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    assert err.count("\n") == 0 and err.startswith("lab: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture(scope="module")
def sim():
    with SimulatorThread("mock", seed=3, rate=200) as st:
        yield st


def record(sim, root, *extra, ws_url=None, rest_url=None):
    return lab("record", "--venue", "mock", "--out", root, "--rest-url", rest_url or sim.url, "--ws-url", ws_url or sim.ws_url, *extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- lab record: wrong or unreachable endpoints ------------------------------------------------

def test_record_refused_ws_url_exits_with_the_reason(sim, tmp_path):
    p = record(sim, tmp_path / "c", "--duration", "30s", ws_url=f"ws://127.0.0.1:{free_port()}/ws")
    assert_one_error_line(p, "no data from the WebSocket", "refused")


def test_record_wrong_ws_path_is_the_404_handshake(sim, tmp_path):
    p = record(sim, tmp_path / "c", "--duration", "30s", ws_url=sim.ws_url.rsplit("/", 1)[0] + "/nope")
    assert_one_error_line(p, "404")


def test_record_http_url_as_ws_url(sim, tmp_path):
    p = record(sim, tmp_path / "c", "--duration", "5s", ws_url=sim.url + "/ws")
    assert_one_error_line(p, "--ws-url", "ws://")


def test_record_unreachable_rest(sim, tmp_path):
    p = record(sim, tmp_path / "c", "--duration", "5s", rest_url=f"http://127.0.0.1:{free_port()}")
    assert_one_error_line(p, "instruments request", "unreachable")


@pytest.mark.parametrize("args, needle", [
    (("--duration", "0"), "--duration"),
    (("--duration", "5s", "--rotate", "0"), "--rotate"),
    (("--duration", "5s", "--min-free", "-5"), "--min-free"),
    (("--duration", "5s", "--flush-interval", "0s"), "--flush-interval"),
    (("--duration", "soon"), "not a duration"),
])
def test_record_nonsense_option_values(sim, tmp_path, args, needle):
    p = record(sim, tmp_path / "c", *args)
    assert_one_error_line(p, needle)
    assert not (tmp_path / "c").exists()  # rejected before anything was created


def test_record_that_was_running_keeps_retrying(tmp_path):
    """The other half of the decision: a venue lost after frames flowed is retried with backoff."""
    with SimulatorThread("mock", seed=3, rate=200, faults={"disconnect_after": 100}) as st:
        p = lab("record", "--venue", "mock", "--out", tmp_path / "c", "--rest-url", st.url, "--ws-url", st.ws_url,
                "--duration", "4s", "--json")
    assert p.returncode == 0, p.stderr
    assert '"reconnects": 0' not in p.stdout


# -- other commands ----------------------------------------------------------------------------

def test_normalize_missing_root():
    assert_one_error_line(lab("normalize", "/nonexistent"), "/nonexistent")


def test_query_empty_sql(tmp_path):
    assert_one_error_line(lab("query", "  ", "--root", tmp_path), "empty SQL")


def test_query_parquet_into_a_missing_directory(tmp_path):
    p = lab("query", "select 1 as x", "--root", tmp_path, "--parquet", "/nonexistent/x.parquet")
    assert_one_error_line(p, "/nonexistent")


@pytest.mark.parametrize("option", ["--from", "--to"])
def test_replay_bad_time(tmp_path, option):
    assert_one_error_line(lab("replay", tmp_path, option, "notadate"), option, "notadate")


@pytest.mark.parametrize("args, needle", [
    (("--rate", "0"), "--rate"),
    (("--rate", "-3"), "--rate"),
    (("--option", "foo=1"), "unknown mock simulator option foo"),
    (("--option", "lookahead"), "KEY=JSON"),
    (("--drop-every", "-1"), "--drop-every"),
    (("--stall-seconds", "-1"), "--stall-seconds"),
])
def test_simulate_nonsense(args, needle):
    assert_one_error_line(lab("simulate", "--port", str(free_port()), *args, timeout=20), needle)


def test_simulate_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = lab("simulate", "--port", str(s.getsockname()[1]), timeout=20)
    assert_one_error_line(p, "address already in use")


# -- lab paper ---------------------------------------------------------------------------------

def _paper(tmp_path, sim, key, secret, *orders):
    keys = tmp_path / "api_keys.properties"
    keys.write_text(f"KRAKEN_API_KEY={key}\nKRAKEN_API_SECRET={secret}\n")
    os.chmod(keys, 0o600)
    env = dict(os.environ, LAB_NONCE_DIR=str(tmp_path / "nonces"))
    args = [a for o in orders for a in ("--order", o)]
    return lab("paper", "--venue", "kraken", "--symbol", "XBT/USD", "--keys", keys, "--rest-url", sim.url,
               "--ws-url", sim.ws_url, *args, "--duration", "1s", "--out", tmp_path / "cap", env=env)


@pytest.fixture(scope="module")
def kraken():
    with SimulatorThread("kraken", seed=5, rate=200) as st:
        yield st


def test_paper_every_order_rejected_for_bad_credentials(tmp_path, kraken):
    import base64

    from lab.venues.kraken.sim import SIM_API_KEY

    wrong = base64.b64encode(b"not the simulator's secret" * 3).decode()
    p = _paper(tmp_path, kraken, SIM_API_KEY, wrong, "buy market 0.01", "sell market 0.01")
    err = assert_one_error_line(p, "every order was rejected", "Invalid signature", "KRAKEN_API_SECRET")
    assert wrong not in err and wrong not in p.stdout


def test_paper_non_base64_secret_is_named_and_not_printed(tmp_path, kraken):
    from lab.venues.kraken.sim import SIM_API_KEY

    secret = "this-is-not-base64-at-all!"
    p = _paper(tmp_path, kraken, SIM_API_KEY, secret, "buy market 0.01")
    err = assert_one_error_line(p, "not valid base64")
    assert "Incorrect padding" not in err
    assert secret not in p.stderr and secret not in p.stdout
