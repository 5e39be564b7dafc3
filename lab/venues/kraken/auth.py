"""Kraken private REST: credentials, API-Sign, nonces, `Balance` and `AddOrder`.

Credentials (first match wins): the `keys` argument (`--keys FILE`), the file named by
`LAB_API_KEYS`, `./api_keys.properties`, then the environment (`KRAKEN_API_KEY`,
`KRAKEN_API_SECRET`). A properties file is the original lab's format: `KEY=VALUE` lines, `#`
comments; blank values and `your_...` placeholders count as absent. A file readable by group or
others gets a warning.

Nonces: one counter per API key, shared by every thread and process of the user through a
file lock on a persisted last value (`$LAB_NONCE_DIR`, default `~/.cache/lab/nonces/`); each
nonce is max(last + 1, now in ms), so it strictly increases even if the clock steps back.

Orders go out with `validate=true` (Kraken checks them, executes nothing) unless the caller
passes `validate=False` AND the connector was made with `allow_live=True` AND the environment
has `LAB_ALLOW_LIVE_ORDERS=1`. Kraken's `error` array raises `KrakenAPIError`.

Secrets never leave this module: private calls bypass the capture writer, nothing here logs,
and reprs and exception messages carry at most a short fingerprint of the key.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import stat
import threading
import time
import urllib.error
import urllib.request
import warnings
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode, urlsplit

import orjson

from lab.venues.kraken.feed import VENUE, altname
from lab.venues.kraken.protocol import sign

log = logging.getLogger(__name__)

KEY_NAME = "KRAKEN_API_KEY"
SECRET_NAME = "KRAKEN_API_SECRET"
KEYS_ENV = "LAB_API_KEYS"
DEFAULT_KEYS_FILE = "api_keys.properties"
LIVE_ENV = "LAB_ALLOW_LIVE_ORDERS"
NONCE_DIR_ENV = "LAB_NONCE_DIR"


class KrakenAPIError(RuntimeError):
    """Kraken answered a private call with a non-empty `error` array (or not at all)."""

    def __init__(self, method: str, errors: list[str]):
        self.method = method
        self.errors = list(errors)
        super().__init__(f"Kraken {method}: {', '.join(self.errors)}")


class CredentialsNotFound(LookupError):
    pass


class LiveTradingDisabled(PermissionError):
    pass


class KeysFileWarning(UserWarning):
    pass


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class Credentials:
    """An API key and its secret. Neither appears in repr/str."""

    __slots__ = ("_key", "_secret", "source")

    def __init__(self, key: str, secret: str, source: str = ""):
        self._key = key
        self._secret = secret
        self.source = source

    @property
    def key(self) -> str:
        return self._key

    @property
    def secret(self) -> str:
        return self._secret

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._key)

    def __repr__(self) -> str:
        return f"Credentials(key=<sha256 {self.fingerprint}>, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("Credentials are not picklable")


def parse_properties(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines; `#` comments; blank values and `your_...` placeholders are dropped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if not name or not value or value.lower().startswith("your_"):
            continue
        out[name] = value
    return out


def _read_keys_file(path: str) -> dict[str, str]:
    st = os.stat(path)
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"{path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}",
            KeysFileWarning, stacklevel=3,
        )
    with open(path, encoding="utf-8") as f:
        return parse_properties(f.read())


def load_credentials(keys: str | None = None, *, cwd: str | None = None, env: dict | None = None) -> Credentials:
    """Find the Kraken key and secret (see the module doc for the order)."""
    env = os.environ if env is None else env
    candidates = []
    if keys:
        if not os.path.exists(keys):
            raise CredentialsNotFound(f"keys file {keys} does not exist")
        candidates.append(keys)
    if env.get(KEYS_ENV):
        candidates.append(env[KEYS_ENV])
    candidates.append(os.path.join(cwd or os.getcwd(), DEFAULT_KEYS_FILE))
    for path in candidates:
        if not os.path.isfile(path):
            continue
        props = _read_keys_file(path)
        if props.get(KEY_NAME) and props.get(SECRET_NAME):
            return Credentials(props[KEY_NAME], props[SECRET_NAME], path)
    key, secret = (env.get(KEY_NAME) or "").strip(), (env.get(SECRET_NAME) or "").strip()
    if key and secret and not key.lower().startswith("your_") and not secret.lower().startswith("your_"):
        return Credentials(key, secret, "environment")
    raise CredentialsNotFound(
        f"no Kraken credentials: pass --keys FILE, set {KEYS_ENV}, create ./{DEFAULT_KEYS_FILE} "
        f"with {KEY_NAME}= and {SECRET_NAME}=, or set both in the environment"
    )


def check_secret(credentials: Credentials) -> None:
    """Kraken secrets are base64; anything else fails every signature. Say so now, naming where
    the secret came from but never the secret itself."""
    import base64
    import binascii

    try:
        base64.b64decode(credentials.secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"{SECRET_NAME} from {credentials.source or 'the caller'} is not valid base64 "
            f"({len(credentials.secret)} characters): copy the private key exactly as Kraken shows it"
        ) from None


class NonceCounter:
    """Strictly increasing nonces for one API key across threads and processes of one user."""

    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, key: str, directory: str | None = None):
        directory = directory or os.environ.get(NONCE_DIR_ENV) or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lab", "nonces")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"kraken-{fingerprint(key)}{hashlib.sha256(key.encode()).hexdigest()[8:24]}.nonce")
        with self._locks_guard:
            self._lock = self._locks.setdefault(self.path, threading.Lock())

    def __repr__(self) -> str:
        return f"NonceCounter(path={self.path!r})"

    def next(self) -> int:
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, 64, 0).strip()
                last = int(raw) if raw.isdigit() else 0
                nonce = max(last + 1, time.time_ns() // 1_000_000)
                data = str(nonce).encode()
                os.pwrite(fd, data.ljust(24), 0)
                return nonce
            finally:
                os.close(fd)  # releases the flock


def _decimal_text(value, what: str, decimals: int | None) -> str:
    """Decimal/str/int (or float through its shortest repr) -> plain decimal text, never rounded."""
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    exp = d.as_tuple().exponent
    if decimals is not None and -exp > decimals and d != d.quantize(Decimal(1).scaleb(-decimals)):
        raise ValueError(f"{what} {value} has more than {decimals} decimals")
    if decimals is not None:
        return f"{d:.{decimals}f}"
    return format(d.normalize(), "f") if exp < 0 else format(d, "f")


class KrakenAuth:
    """`get_connector("kraken_auth", keys=PATH, rest_url=URL)`: the public Kraken connector plus
    `get_account_balance()` and `place_order(...)`. A mixin: the registry puts it over the live
    connector (`lab.recorder.connector.get_connector`), so this folder imports nothing above it."""

    def __init__(self, keys: str | None = None, rest_url: str | None = None, ws_url: str | None = None,
                 depth: int = 0, *, allow_live: bool = False, nonce_dir: str | None = None,
                 timeout: float = 10.0, credentials: Credentials | None = None):
        super().__init__(VENUE, rest_url=rest_url, ws_url=ws_url, depth=depth)
        self._credentials = credentials or load_credentials(keys)
        check_secret(self._credentials)
        self._nonces = NonceCounter(self._credentials.key, nonce_dir)
        self.allow_live = allow_live
        self.timeout = timeout
        self._pairs: dict[str, dict] | None = None

    def __repr__(self) -> str:
        return f"KrakenAuthConnector(rest_url={self.rest_url!r}, key=<sha256 {self._credentials.fingerprint}>, allow_live={self.allow_live})"

    # -- transport ----------------------------------------------------------------------------
    def private(self, method: str, params: dict | None = None) -> dict:
        """POST /0/private/<method>; returns `result`, raises KrakenAPIError on `error`."""
        path = f"/0/private/{method}"
        nonce = self._nonces.next()
        body = urlencode([("nonce", str(nonce))] + [(k, str(v)) for k, v in (params or {}).items() if v is not None])
        request = urllib.request.Request(
            self.rest_url + path, data=body.encode(), method="POST",
            headers={
                "API-Key": self._credentials.key,
                "API-Sign": sign(path, body, nonce, self._credentials.secret),
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "User-Agent": "lab/0.1",
            },
        )
        log.debug("POST %s (%d bytes)", path, len(body))
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise KrakenAPIError(method, [f"HTTP {exc.code}"]) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KrakenAPIError(method, [f"cannot reach {urlsplit(self.rest_url).netloc}: {reason}"]) from None
        else:
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise KrakenAPIError(method, ["response is not JSON"]) from None
        if not isinstance(doc, dict):
            raise KrakenAPIError(method, ["unexpected response"])
        if doc.get("error"):
            raise KrakenAPIError(method, [str(e) for e in doc["error"]])
        return doc.get("result") or {}

    def _pair_info(self, pair: str) -> dict | None:
        if self._pairs is None:
            try:
                doc = orjson.loads(self._get("/0/public/AssetPairs"))
                self._pairs = {}
                for internal, p in (doc.get("result") or {}).items():
                    for name in (internal, p.get("altname"), p.get("wsname")):
                        if name:
                            self._pairs[name] = p
            except Exception:  # formatting falls back to the caller's exact text
                self._pairs = {}
        return self._pairs.get(pair)

    # -- API ----------------------------------------------------------------------------------
    def get_account_balance(self) -> dict:
        return self.private("Balance")

    def validate_order(self, pair: str, side: str, ordertype: str, volume, price=None) -> dict:
        """The paper-trading hook (`lab paper`): the venue validates the order (validate=true)."""
        return self.place_order(altname(pair), side, ordertype, volume, price=price, validate=True)

    def place_order(self, pair: str, type: str, ordertype: str, volume, price=None, validate: bool = True, **extra) -> dict:
        """AddOrder. `validate=True` (the default) asks Kraken to check the order and execute
        nothing: the result then has `descr` and no `txid`. Returns Kraken's `result` dict."""
        if type not in ("buy", "sell"):
            raise ValueError(f"type must be 'buy' or 'sell', got {type!r}")
        if not validate:
            if not self.allow_live or os.environ.get(LIVE_ENV) != "1":
                raise LiveTradingDisabled(
                    f"live orders need validate=False, a connector made with allow_live=True (lab: --live) "
                    f"and {LIVE_ENV}=1 in the environment"
                )
        info = self._pair_info(pair)
        params: dict = {
            "ordertype": ordertype,
            "pair": pair,
            "type": type,
            "volume": _decimal_text(volume, "volume", int(info["lot_decimals"]) if info else None),
        }
        if price is not None:
            params["price"] = _decimal_text(price, "price", int(info["pair_decimals"]) if info else None)
        elif ordertype == "limit":
            raise ValueError("a limit order needs a price")
        for k, v in extra.items():
            params[k] = v
        if validate:
            params["validate"] = "true"
        return self.private("AddOrder", params)
