"""The `lab view` page (Streamlit): `streamlit run lab/view/app.py -- --venue V --symbol S ...`.

Live: venue and symbol pickers from the registry, "Fetch snapshot now", the "Use WebSocket
streaming" toggle (start_stream / stop_stream), then a fragment redrawn every 0.2 s from
`latest_snapshot()` and `status()`: badge and counters, spread and mid, the depth ladder, a chart
of best bid / ask / mid, the latest trades. Connectors that validate orders add the balance and an
order form (validate=true, filled by the local paper broker). Replay (`--capture ROOT`): the same
page over a capture, with play/pause and speed. The page logic is lab/view/model.py.
"""
from __future__ import annotations

import argparse
import html
import os
import sys

import streamlit as st

from lab import get_connector, list_connectors
from lab.venues import registry
from lab.view import model

REFRESH = 0.2  # seconds between redraws (5 a second)
BACKOFF_MAX = 2.0  # the page's reconnect backoff ceiling: a restarted venue shows up within ~2 s


def config() -> argparse.Namespace:
    """Options after `--` on the streamlit command line; LAB_VIEW_* environment variables
    (the tests' way in) fill what is not given."""
    p = argparse.ArgumentParser(prog="lab view", add_help=False)
    env = os.environ.get
    p.add_argument("--venue", default=env("LAB_VIEW_VENUE"))
    p.add_argument("--symbol", default=env("LAB_VIEW_SYMBOL"))
    p.add_argument("--rest-url", default=env("LAB_VIEW_REST_URL"))
    p.add_argument("--ws-url", default=env("LAB_VIEW_WS_URL"))
    p.add_argument("--capture", default=env("LAB_VIEW_CAPTURE"))
    p.add_argument("--keys", default=env("LAB_VIEW_KEYS"))
    p.add_argument("--levels", type=int, default=int(env("LAB_VIEW_LEVELS") or 10))
    p.add_argument("--stream", action="store_true", default=env("LAB_VIEW_STREAM") == "1")
    args, _ = p.parse_known_args(sys.argv[1:])
    return args


def badge_html(b: model.Badge) -> str:
    return (f'<span class="lab-badge" data-state="{html.escape(b.state)}" style="background:{b.colour};color:white;'
            f'padding:0.25em 0.7em;border-radius:0.4em;font-weight:700;font-family:monospace">{html.escape(b.text)}</span>')


def ladder_html(lad: model.Ladder, dim: bool = False) -> str:
    head = "<tr><th>bid amount</th><th>bid</th><th>ask</th><th>ask amount</th></tr>"
    body = "".join(
        f'<tr><td style="text-align:right">{r["bid amount"]}</td><td style="text-align:right;color:#1a7f37" class="lab-bid">{r["bid"]}</td>'
        f'<td style="text-align:right;color:#d1242f" class="lab-ask">{r["ask"]}</td><td style="text-align:right">{r["ask amount"]}</td></tr>'
        for r in lad.rows())
    style = "font-family:monospace;width:100%" + (";opacity:0.45" if dim else "")
    return f'<table class="lab-ladder" style="{style}">{head}{body}</table>'


def counters_html(c: dict) -> str:
    return '<div class="lab-counters" style="font-family:monospace">' + " &nbsp; ".join(
        f'{k} <b data-counter="{k}">{v}</b>' for k, v in c.items()) + "</div>"


def show_book(book, history: model.History, trades, levels: int, badge: model.Badge, counters: dict | None,
              note: str = "") -> None:
    top = st.columns([2, 5])
    top[0].markdown(badge_html(badge), unsafe_allow_html=True)
    if counters is not None:
        top[1].markdown(counters_html(counters), unsafe_allow_html=True)
    if note:
        st.caption(note)
    if book is None:
        st.info("No book yet: fetch a snapshot or turn on streaming.")
        return
    q = model.quote(book)
    m = st.columns(4)
    m[0].metric("best bid", q.bid or "-")
    m[1].metric("best ask", q.ask or "-")
    m[2].metric("spread", q.spread or "-")
    m[3].metric("mid", q.mid or "-")
    current = badge.state in ("LIVE", "REPLAY", "PAUSED", "STOPPED")  # STOPPED: a fetched snapshot
    st.caption(f"{book.venue} {book.symbol} seq {book.seq} · {'synced' if book.synced else 'NOT SYNCED'}"
               + ("" if current else " · the last book received, not current"))
    left, right = st.columns([3, 2])
    with left:
        st.markdown(ladder_html(model.ladder(book, levels), dim=not current), unsafe_allow_html=True)
    with right:
        cols = history.columns()
        if len(cols["time"]) > 1:
            st.altair_chart(price_chart(cols))
        rows = [model.trade_row(t) for t in list(trades)[:15]]
        st.markdown("**latest trades**")
        if rows:
            st.table(rows)
        else:
            st.caption("no trades yet")


def price_chart(cols: dict):
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame({"time": pd.to_datetime(cols["time"], unit="s"), "bid": cols["bid"], "ask": cols["ask"],
                          "mid": cols["mid"]}).melt("time", var_name="series", value_name="price")
    return (alt.Chart(frame, height=260, width="container").mark_line(interpolate="step-after")
            .encode(x=alt.X("time:T", axis=alt.Axis(format="%H:%M:%S", title=None)),
                    y=alt.Y("price:Q", scale=alt.Scale(zero=False), title=None),
                    color=alt.Color("series:N", scale=alt.Scale(domain=["bid", "ask", "mid"],
                                                                 range=["#1a7f37", "#d1242f", "#6e7781"]),
                                    legend=alt.Legend(orient="bottom", title=None))))


# -- live ---------------------------------------------------------------------------------------
def connector_for(name: str, cfg) -> object:
    """One connector per (name, endpoints) per browser session."""
    key = ("conn", name, cfg.rest_url, cfg.ws_url)
    conn = st.session_state.get(key)
    if conn is None:
        kwargs = {"rest_url": cfg.rest_url, "ws_url": cfg.ws_url}
        if registry.connectors()[name][1] is not None:  # an extended connector (a private API): keys
            kwargs["keys"] = cfg.keys
        conn = get_connector(name, **kwargs)
        conn.backoff_max = BACKOFF_MAX
        st.session_state[key] = conn
    return conn


def live_page(cfg) -> None:
    names = list_connectors()
    default = cfg.venue if cfg.venue in names else registry.embedded_venue()
    with st.sidebar:
        st.header("lab view")
        name = st.selectbox("venue", names, index=names.index(default), key="venue")
        try:
            conn = connector_for(name, cfg)
        except Exception as exc:  # missing keys, bad options: say so, never show secrets
            st.error(f"{name}: {exc}")
            st.stop()
        skey = ("symbols", name, cfg.rest_url)
        if skey not in st.session_state:
            try:
                st.session_state[skey] = conn.list_symbols()
            except Exception as exc:
                st.session_state[skey] = []
                st.warning(f"cannot list symbols: {exc}")
        symbols = st.session_state[skey] or ([cfg.symbol] if cfg.symbol else [])
        if not symbols:
            st.error("no symbols")
            st.stop()
        wanted = cfg.symbol if cfg.symbol in symbols else symbols[0]
        symbol = st.selectbox("symbol", symbols, index=symbols.index(wanted), key="symbol")
        levels = st.slider("levels", 1, 50, cfg.levels, key="levels")
        fetch = st.button("Fetch snapshot now", key="fetch")
        streaming = st.toggle("Use WebSocket streaming", value=cfg.stream, key="streaming")

    session: model.LiveSession | None = st.session_state.get("session")
    if session is None or session.connector is not conn or session.symbol != symbol:
        if session is not None:
            session.stop()
        session = st.session_state["session"] = model.LiveSession(conn, symbol)
    if streaming and not session.streaming:
        session.start()
    elif not streaming and session.streaming:
        session.stop()
    if fetch:
        try:
            session.fetch_snapshot()
        except Exception as exc:
            st.error(f"snapshot failed: {exc}")

    @st.fragment(run_every=REFRESH)
    def live_view() -> None:
        status = session.status() if session.streaming else None
        note = status.detail if status is not None and status.state != "LIVE" and status.detail else ""
        show_book(session.book(), session.history, session.trades, levels, model.badge(status),
                  model.counters(status), note)

    live_view()
    if session.can_trade:
        trade_panel(session)


def trade_panel(session: model.LiveSession) -> None:
    st.subheader("paper orders (validate=true: the venue checks, nothing executes)")
    cols = st.columns([1, 3])
    with cols[0]:
        if st.button("Balance", key="balance"):
            try:
                st.session_state["balance_result"] = session.balance()
            except Exception as exc:
                st.session_state["balance_result"] = {"error": str(exc)}
        if "balance_result" in st.session_state:
            st.json(st.session_state["balance_result"])
    with cols[1]:
        with st.form("order"):
            side = st.radio("side", ["buy", "sell"], horizontal=True, key="order_side")
            ordertype = st.radio("type", ["market", "limit"], horizontal=True, key="order_type")
            volume = st.text_input("volume", "0.01", key="order_volume")
            price = st.text_input("price (limit)", "", key="order_price")
            sent = st.form_submit_button("Send (validate=true)")
        if sent:
            try:
                st.session_state["order_result"] = session.send_order(side, ordertype, volume.strip(), price.strip() or None)
            except Exception as exc:
                st.session_state["order_result"] = {"ok": False, "venue": str(exc), "order": None, "fills": []}
        result = st.session_state.get("order_result")
        if result is not None:
            (st.success if result["ok"] else st.error)("venue: " + (str(result["venue"]) if not result["ok"] else "accepted"))
            st.json({"venue answer": result["venue"], "paper order": result["order"], "paper fills": result["fills"]})


# -- replay -------------------------------------------------------------------------------------
def replay_page(cfg) -> None:
    session: model.ReplaySession | None = st.session_state.get("replay")
    if session is None:
        session = st.session_state["replay"] = model.ReplaySession(cfg.capture, cfg.symbol, cfg.venue)
    with st.sidebar:
        st.header("lab view: replay")
        st.caption(cfg.capture)
        symbol = st.selectbox("symbol", session.symbols, index=session.symbols.index(session.symbol), key="replay_symbol")
        speed = st.select_slider("speed", [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0], value=1.0, key="replay_speed")
        levels = st.slider("levels", 1, 50, cfg.levels, key="levels")
        c = st.columns(3)
        play = c[0].button("Play", key="play")
        pause = c[1].button("Pause", key="pause")
        restart = c[2].button("Restart", key="restart")
    session.set_speed(speed)
    if symbol != session.symbol or restart:
        session.symbol = symbol
        session.history.clear()
        session.start()
    if play:
        if session.connector is None:
            session.start()
        session.play()
    if pause:
        session.pause()

    @st.fragment(run_every=REFRESH)
    def replay_view() -> None:
        note = f"{session.books} books replayed" + (" · finished" if session.done else "")
        show_book(session.book(), session.history, session.trades, levels,
                  model.badge(None, replay=True, paused=session.paused), None, note)

    replay_view()


st.set_page_config(page_title="lab view", layout="wide")
_cfg = config()
if _cfg.capture:
    replay_page(_cfg)
else:
    live_page(_cfg)
