"""Settings: ``config/rems-ingest.toml`` (or --config), overridden by ``REMS_*`` env vars.

Nested keys use ``__``: ``REMS_MLLP__PORT=2576``, ``REMS_AMQP__URL=amqp://...``.
Secrets (broker/DB URLs with passwords) come from the environment or ``*_file`` settings,
never from the committed config file.
"""

from __future__ import annotations

import ipaddress
import os
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from rems_ingest.feeds.settings import FeedSettings, valid_networks

if TYPE_CHECKING:
    from rems_ingest.core.plausibility import TimeLimits
    from rems_ingest.feeds.registry import Registry
    from rems_ingest.hl7v2.codes import CodeMap

DEFAULT_CONFIG = Path("config/rems-ingest.toml")


class ConfigError(Exception):
    """One line naming the setting that is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(validate_assignment=True, extra="forbid")


_STORE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
_AMQP_SCHEMES = ("amqp", "amqps")


def _secret_file(path: Path, setting: str) -> str:
    """The first line of a ``*_file`` setting, or one line naming the setting and the file."""
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{setting} {path}: {exc.strerror or exc}") from None


def check_store_url(url: str, setting: str = "store.url") -> str:
    """A store URL this daemon can open: sqlite:///PATH or postgresql://..., driver installed.
    A relative SQLite path is made absolute (against the working directory) once, here."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{setting} is not a database URL (expected sqlite:///PATH or postgresql://user@host/db)") from None
    if parsed.drivername not in _STORE_SCHEMES:
        raise ConfigError(f"{setting}: {parsed.drivername} is not supported (use sqlite:///PATH or postgresql://user@host/db)")
    if parsed.drivername.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ConfigError(f"{setting}: the PostgreSQL driver psycopg is not installed (pip install 'psycopg[binary]')") from None
        return url
    db = parsed.database or ""
    if not db or db == ":memory:":
        raise ConfigError(f"{setting}: an SQLite store needs a file path (sqlite:///var/rems-ingest.db), not memory")
    return f"sqlite:///{Path(db).expanduser().absolute()}"


def display_url(url: str) -> str:
    """A store or broker URL with its password masked (a SQLite path is shown whole)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as a mask, never raw
        return "**********"


class StoreSettings(_Section):
    url: SecretStr = SecretStr("sqlite:///var/rems-ingest.db")
    url_file: Path | None = None
    group_commit_max: int = Field(256, ge=1, le=10_000)

    def resolved_url(self) -> str:
        if self.url_file:
            return check_store_url(_secret_file(self.url_file, "store.url_file"), "store.url_file")
        return check_store_url(self.url.get_secret_value())


class MllpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(2575, ge=0, le=65535)
    # SO_REUSEPORT: several daemons on one host share the MLLP port (the kernel spreads connections)
    # and so use more than one CPU. PostgreSQL store only; every daemon needs the same config
    # except http.port. Off: a second daemon on the port fails to start ("address in use").
    reuse_port: bool = False
    max_frame_bytes: int = Field(1 << 20, ge=1024)
    max_connections: int = Field(256, ge=1)
    # one sender address may hold at most this many connections; at max_connections the
    # connection longest without a complete frame (and nothing in flight) is closed for a new one
    max_connections_per_source: int = Field(16, ge=1)
    max_junk_bytes: int = Field(4096, ge=0)  # bytes outside a frame before the connection is closed
    idle_timeout_seconds: float = Field(300, gt=0)
    frame_timeout_seconds: float = Field(60, gt=0)
    max_segments: int = Field(2000, ge=10)
    # a result drawn further than this after its message arrived, or longer ago than
    # max_result_age_days, is kept and reported (ERR warning + data.quality) but never moves
    # a patient's state (a 2099 or 9999-12-31 "unknown" date would silence overdue alerts)
    max_future_skew_hours: float = Field(24, gt=0, le=24 * 365)
    max_result_age_days: int = Field(365, ge=1, le=36500)
    # connection-level pre-filter (CIDR), closed at connect: empty = none. Who may send results
    # is decided per message by the registered [feeds] (an unregistered sender gets AR)
    allow: list[str] = []
    processing_ids: list[str] = ["P"]
    default_charset: str = "utf-8"
    application: str = "REMS_INGEST"
    facility: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set to require client certificates (mutual TLS)
    # site codes in OBX-3 (code or label, case-insensitive) -> what they measure; added to the built-in list
    local_codes: dict[str, Literal["anc", "segs_abs", "bands_abs", "neut_pct", "segs_pct", "bands_pct", "wbc", "not_blood", "neut_by_unit"]] = {}

    def time_limits(self) -> TimeLimits:
        from datetime import timedelta

        from rems_ingest.core.plausibility import TimeLimits

        return TimeLimits(timedelta(hours=self.max_future_skew_hours), timedelta(days=self.max_result_age_days))

    def ingest_options(self) -> dict[str, Any]:
        """The IngestService settings every entry point shares (daemon, replay, demo)."""
        return dict(
            processing_ids=tuple(p.upper() for p in self.processing_ids),
            default_charset=self.default_charset,
            max_segments=self.max_segments,
            code_map=self.code_map(),
            application=self.application,
            facility=self.facility,
            time_limits=self.time_limits(),
        )

    def code_map(self) -> CodeMap:
        from rems_ingest.hl7v2.codes import DEFAULT_LOCAL_CODES, CodeMap

        return CodeMap({**DEFAULT_LOCAL_CODES, **self.site_codes()})

    def site_codes(self) -> dict[str, Any]:
        from rems_ingest.hl7v2.codes import Role

        return {k.strip().upper(): Role(v) for k, v in self.local_codes.items()}

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return valid_networks(v)


class AmqpSettings(_Section):
    url: SecretStr | None = None  # unset: alerts are held durably in the outbox
    url_file: Path | None = None
    queue_type: Literal["quorum", "classic"] = "quorum"
    topology_prefix: str = Field("rems", pattern=r"^[A-Za-z0-9_.-]{1,60}$")  # rems.alerts, rems.paging, ...
    publish_timeout_seconds: float = Field(10, gt=0)
    batch: int = Field(500, ge=1, le=10_000)
    # names this daemon's outbox claims; a restarted daemon with the same id releases its own
    # stale claims at once (else they wait out the lease). Default: host name and MLLP port.
    # Daemons sharing one PostgreSQL store need distinct ids (they differ by host, or set one);
    # with mllp.reuse_port each daemon adds its process id (bootstrap.relay_owner).
    relay_id: str = Field("", max_length=120)
    # /readyz fails when a configured broker has been unreachable long enough that an alert has
    # waited this long in the outbox (with no broker configured, holding alerts is the intent)
    ready_max_outbox_age_seconds: float = Field(300, gt=0)

    def resolved_url(self) -> str | None:
        url = _secret_file(self.url_file, "amqp.url_file") if self.url_file else (self.url.get_secret_value() if self.url else None)
        if url is not None and url.split("://", 1)[0].lower() not in _AMQP_SCHEMES:
            raise ConfigError(f"amqp.{'url_file' if self.url_file else 'url'} is not a broker URL (expected amqp://user:password@host:5672/)")
        return url


class MtlsIdentity(_Section):
    roles: list[Literal["pharmacy", "prescriber", "clinic", "integration", "auditor"]] = Field(min_length=1)
    pharmacy_id: str = ""


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # who may call the API (issue #15): "tokens" (API tokens from `rems-ingest token create`, and
    # OIDC bearer JWTs when oidc_issuer is set) or "none" (no identities: loopback only, for a
    # single-user workstation; refused on any other address)
    auth: Literal["tokens", "none"] = "tokens"
    tls_cert: Path | None = None  # HTTPS
    tls_key: Path | None = None
    # mutual TLS: client certificates signed by this CA are asked for (optional: a client
    # without one may still use a bearer token); a verified certificate whose subject CN is in
    # mtls_identities is that identity, e.g. {"rx-main-st" = {roles = ["pharmacy"], pharmacy_id = "RX1"}}
    tls_client_ca: Path | None = None
    mtls_identities: dict[str, MtlsIdentity] = {}
    # OIDC: bearer JWTs signed by the hospital's identity provider, checked against its JWKS
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_jwks_file: Path | None = None
    oidc_subject_claim: str = "sub"
    oidc_roles_claim: str = "roles"  # a list (or space-separated string) of the IdP's role names
    oidc_role_map: dict[str, str] = {}  # IdP role name -> pharmacy | prescriber | clinic | integration | auditor
    oidc_pharmacy_claim: str = "pharmacy_id"  # limits a pharmacy identity to its patients
    # the console's "Log in with <provider>" (authorization code flow with PKCE): the access token
    # it returns must be a JWT the settings above accept
    oidc_authorize_url: str = ""
    oidc_token_url: str = ""
    oidc_client_id: str = ""
    oidc_client_secret_file: Path | None = None
    oidc_scope: str = "openid"
    oidc_redirect_url: str = ""  # e.g. https://rems.hospital.example:8080/ui/oidc/callback
    # failed authentications per client address per minute before it gets 429 for the minute
    max_auth_failures_per_minute: int = Field(20, ge=1)


class RulesSettings(_Section):
    profile: str = "us-label"
    dispense_profile: str | None = None  # one of core.policy.DISPENSE_PROFILES (default: the profile's)
    timezone: str = "UTC"  # whose "today" the overdue sweep uses

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone (e.g. UTC, Europe/London, America/New_York)") from None
        return v

    @field_validator("dispense_profile")
    @classmethod
    def _known_profile(cls, v: str | None) -> str | None:
        from rems_ingest.core.policy import DISPENSE_PROFILES

        if v is not None and v not in DISPENSE_PROFILES:
            raise ValueError(f"must be one of {', '.join(DISPENSE_PROFILES)}")
        return v


class SweepSettings(_Section):
    interval_seconds: float = Field(900, gt=0)
    feed_check_seconds: float = Field(60, gt=0)  # how often the feed watchdog looks for a silent lab feed


class AuditSettings(_Section):
    # the access trail's head is anchored outside the store every this often (and on every
    # state-changing request): to the log and as a rems.audit message
    anchor_seconds: float = Field(300, gt=0)
    signing_key_file: Path | None = None  # Ed25519 private key (PEM): anchors are signed; audit verify --public-key checks them


class LogSettings(_Section):
    format: Literal["json", "console"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


_CONFIG_FILE: ContextVar[Path | None] = ContextVar("rems_config_file", default=None)  # --config, for one load


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REMS_", env_nested_delimiter="__", extra="forbid", validate_assignment=True)

    store: StoreSettings = StoreSettings()
    mllp: MllpSettings = MllpSettings()
    amqp: AmqpSettings = AmqpSettings()
    http: HttpSettings = HttpSettings()
    rules: RulesSettings = RulesSettings()
    sweep: SweepSettings = SweepSettings()
    log: LogSettings = LogSettings()
    audit: AuditSettings = AuditSettings()
    # the registered lab feeds ([feeds.NAME]); none: this host alone may send (loopback)
    feeds: dict[str, FeedSettings] = {}
    shutdown_grace_seconds: float = Field(10, gt=0)

    def registry(self) -> Registry:
        from rems_ingest.feeds.settings import registry

        return registry(self.feeds, self.mllp.site_codes())

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource, file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _CONFIG_FILE.get() or Path(os.environ.get("REMS_CONFIG", DEFAULT_CONFIG))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_http(h: HttpSettings) -> None:

    if h.auth == "none" and not _loopback(h.host):
        raise ConfigError(f"http.auth = none on {h.host}: anyone who can reach it could read patients and lift a pharmacy hold; use http.auth = tokens (and OIDC if you have one) or bind http.host to 127.0.0.1")
    if h.oidc_issuer and not (h.oidc_audience and (h.oidc_jwks_url or h.oidc_jwks_file)):
        raise ConfigError("http.oidc_issuer needs http.oidc_audience and http.oidc_jwks_url or http.oidc_jwks_file")
    if h.oidc_authorize_url and not (h.oidc_issuer and h.oidc_token_url and h.oidc_client_id and h.oidc_redirect_url):
        raise ConfigError("http.oidc_authorize_url needs http.oidc_issuer, oidc_token_url, oidc_client_id and oidc_redirect_url")
    if h.oidc_jwks_file and not h.oidc_jwks_file.is_file():
        raise ConfigError(f"http.oidc_jwks_file {h.oidc_jwks_file}: No such file")
    for name, role in h.oidc_role_map.items():
        if role not in ("pharmacy", "prescriber", "clinic", "integration", "auditor"):
            raise ConfigError(f"http.oidc_role_map.{name} = {role!r}: roles are pharmacy, prescriber, clinic, integration, auditor")
    _check_https(h)


def _check_https(h: HttpSettings) -> None:
    import ssl

    if bool(h.tls_cert) != bool(h.tls_key):
        raise ConfigError("http.tls_cert and http.tls_key go together: set both or neither")
    if (h.tls_client_ca or h.mtls_identities) and not h.tls_cert:
        raise ConfigError("http.tls_client_ca and http.mtls_identities need HTTPS (http.tls_cert and http.tls_key)")
    if h.tls_client_ca and not h.tls_client_ca.is_file():
        raise ConfigError(f"http.tls_client_ca {h.tls_client_ca}: No such file")
    if h.tls_cert and h.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(h.tls_cert), str(h.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"http.tls_cert/tls_key ({h.tls_cert}, {h.tls_key}) do not load: {getattr(exc, 'strerror', None) or exc}") from None


def check_settings(s: Settings) -> None:
    """What start-up and ``check-config`` verify beyond the types: the store and broker URLs
    (and their files) resolve, the TLS files load. Raises ConfigError naming the setting."""
    import ssl

    s.store.resolved_url()
    s.amqp.resolved_url()
    _check_http(s.http)
    if s.audit.signing_key_file:
        from rems_ingest.service.audit_anchor import Signer

        try:
            Signer(s.audit.signing_key_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"audit.signing_key_file {s.audit.signing_key_file}: {getattr(exc, 'strerror', None) or exc}") from None
    m = s.mllp
    if not s.feeds and not _loopback(m.host):
        raise ConfigError(f"mllp.host = {m.host} with no registered lab feed: anyone on the network could send a result that lifts a hold; register the lab's feed ([feeds.NAME] with networks or certificate_names) or bind mllp.host to 127.0.0.1")
    if bool(m.tls_cert) != bool(m.tls_key):
        raise ConfigError("mllp.tls_cert and mllp.tls_key go together: set both or neither")
    if m.tls_cert and m.tls_key:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(m.tls_cert), str(m.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mllp.tls_cert/tls_key ({m.tls_cert}, {m.tls_key}) do not load: {getattr(exc, 'strerror', None) or exc}") from None
    if m.tls_client_ca:
        try:
            ssl.create_default_context(cafile=str(m.tls_client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"mllp.tls_client_ca {m.tls_client_ca} does not load: {getattr(exc, 'strerror', None) or exc}") from None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
    token = _CONFIG_FILE.set(path)  # no process-wide side effect (a later Settings() is unaffected)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid setting {where}: {err['msg']}") from None
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        _CONFIG_FILE.reset(token)
