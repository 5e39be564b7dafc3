"""`lab view`: start the Streamlit page (lab/view/app.py) bound to 127.0.0.1."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import click

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.py")
MISSING = "lab view needs Streamlit: pip install 'lab[view]'"


def streamlit_command(*, venue=None, symbol=None, port=8501, host="127.0.0.1", rest_url=None, ws_url=None,
                      capture=None, keys=None, stream=False, headless=True) -> list[str]:
    cmd = [sys.executable, "-m", "streamlit", "run", APP, "--server.address", host, "--server.port", str(port),
           "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer", "--"]
    for flag, value in (("--venue", venue), ("--symbol", symbol), ("--rest-url", rest_url), ("--ws-url", ws_url),
                        ("--capture", capture), ("--keys", keys)):
        if value:
            cmd += [flag, value]
    if stream:
        cmd.append("--stream")
    return cmd


@click.command(short_help="The live market page (Streamlit); --capture replays one.",
               epilog="\b\nExamples:\n  lab simulate --venue kraken --port 8765\n"
                      "  lab view --venue kraken --symbol XBT/USD --rest-url http://127.0.0.1:8765 --ws-url ws://127.0.0.1:8765/ws\n"
                      "  lab view --capture captures")
@click.option("--venue", default=None, help="Connector to open (`lab venues`; extra connectors such as the authenticated one too).")
@click.option("--symbol", default=None, help="Venue symbol to show first.")
@click.option("--port", default=8501, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--rest-url", default=None, help="Override the venue's REST base URL (simulator, proxy, sandbox).")
@click.option("--ws-url", default=None, help="Override the venue's WebSocket URL.")
@click.option("--capture", default=None, type=click.Path(exists=True, file_okay=False), help="Replay this capture root instead of live.")
@click.option("--keys", default=None, type=click.Path(dir_okay=False), help="api_keys.properties for connectors with a private API.")
@click.option("--stream", is_flag=True, help="Start with WebSocket streaming on.")
def view(venue, symbol, port, host, rest_url, ws_url, capture, keys, stream) -> None:
    """Start the page with `streamlit run` and wait for it (Ctrl-C stops it)."""
    if importlib.util.find_spec("streamlit") is None:
        click.echo(MISSING, err=True)
        sys.exit(2)
    cmd = streamlit_command(venue=venue, symbol=symbol, port=port, host=host, rest_url=rest_url, ws_url=ws_url,
                            capture=capture, keys=keys, stream=stream)
    click.echo(f"lab view: http://{host}:{port}", err=True)
    try:
        sys.exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        sys.exit(130)
