"""Settings: config/default.toml, then config/networks/<network>.toml, then the
environment (prefix ``SETTLEMENT_``), each overriding the one before.

Bad settings fail at start with ``SettingsError`` naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "SETTLEMENT_"
#: where an explorer URL template takes the transaction hash
EXPLORER_HASH = "{hash}"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    network: Literal["local", "testnet"] = "local"
    database_url: str = ""
    app_database_url: str = ""
    app_password: SecretStr | None = None
    data_dir: Path = Path(".settlement")
    embedded_database: str = Field(default="settlement", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    pool_size: int = Field(default=10, ge=1, le=200)
    reason_max_chars: int = Field(default=2000, ge=1, le=100_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    xrpl_url: str = "http://127.0.0.1:5005"
    horizon_url: str = "http://127.0.0.1:8000"
    stellar_network_passphrase: str = "Standalone Network ; February 2017"  # noqa: S105 - public
    # the settlement agents: they pay the fees of commits and unwinds and receive claims
    xrpl_agent: str = ""
    stellar_agent: str = ""
    #: Stellar channel accounts (comma-separated G... addresses whose keys are in the
    #: keystore): each is the source of one in-flight transaction at a time, so
    #: settlements from one sender or the agent submit side by side; none = one account
    stellar_channels: str = ""
    #: the most the engine bids per Stellar operation when surge pricing raises the fee
    #: (stroops; the bid follows the network's fee stats up to this cap)
    stellar_max_fee_per_op_stroops: int = Field(default=10_000, ge=100, le=10_000_000)
    #: sign XRPL transactions on the signing account's Tickets when it holds any (see
    #: ``settle xrpl tickets``), so they need not wait for one Sequence each
    xrpl_use_tickets: bool = True
    #: each `settle worker` keeps these XRPL accounts (comma-separated; none = the agent)
    #: at this many Tickets, topping up below half; 0: tickets are the operator's job
    #: (`settle xrpl tickets`)
    xrpl_ticket_target: int = Field(default=0, ge=0, le=250)
    xrpl_ticket_accounts: str = ""
    # Fernet keys; on the local network both are generated under data_dir when unset
    keystore_key: SecretStr | None = None
    sealing_key: SecretStr | None = None
    #: the encrypted keystore file (relative paths are relative to data_dir)
    keystore_file: Path = Path("keys/keystore.fernet")
    #: a name scoring at least this (0-100, rapidfuzz) against a sanctioned name is a hit
    sanctions_match_threshold: int = Field(default=88, ge=50, le=100)
    #: DVP timing (DESIGN section 4), in seconds of ledger time. T_cancel = commit
    #: deadline + the safety margin: room for every claim and payout after COMMIT.
    #: An XRPL finish is signed only while that ledger is at least the commit-send
    #: margin before T_cancel: no less than a transaction's lifetime there (20 ledgers
    #: of 3-5 s on the public networks). A settlement still committing within the
    #: review lead of T_cancel is flagged for a person.
    dvp_safety_margin_s: float = Field(default=300.0, gt=0, le=86_400)
    dvp_commit_send_margin_s: float = Field(default=100.0, gt=0, le=86_400)
    dvp_review_before_cancel_s: float = Field(default=60.0, ge=0, le=86_400)
    dvp_min_window_s: float = Field(default=10.0, gt=0, le=86_400)
    #: audit anchors (``settle audit anchor``): the anchor account per ledger (its key in
    #: the keystore; empty: anchors are not published on that ledger), a new anchor due
    #: every ``anchor_interval_s`` seconds and/or every ``anchor_every_entries`` new audit
    #: entries (0: that trigger is off), covering entries recorded ``anchor_settle_s``
    #: before it is taken (longer than any transaction that writes an audit entry)
    xrpl_anchor_account: str = ""
    stellar_anchor_account: str = ""
    anchor_interval_s: float = Field(default=600.0, ge=0, le=86_400 * 7)
    anchor_every_entries: int = Field(default=0, ge=0)
    anchor_settle_s: float = Field(default=5.0, ge=0, le=3_600)
    #: links to a public ledger explorer in the console: a URL template (http or https)
    #: with ``{hash}`` where the transaction hash goes; empty: hashes show as text
    xrpl_explorer_tx_url: str = ""
    stellar_explorer_tx_url: str = ""
    #: commitments strictly above this amount need two distinct officers' approvals
    four_eyes_threshold: Decimal = Field(default=Decimal("1000000"), ge=0, allow_inf_nan=False)
    #: webhooks: the engine's Ed25519 signing key (base64url of the 32-byte private key;
    #: on the local network generated under data_dir when unset); each attempt's HTTP
    #: timeout and quick retries (timeouts, 5xx); the backoff between attempts, doubling
    #: from base to max; how long a delivery is retried before it is dead; how many
    #: attempts a 4xx other than 408/429 gets
    webhook_signing_key: SecretStr | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_quick_tries: int = Field(default=3, ge=1, le=10)
    webhook_backoff_base_s: float = Field(default=5.0, gt=0, le=3_600)
    webhook_backoff_max_s: float = Field(default=3_600.0, gt=0, le=86_400)
    webhook_give_up_after_s: float = Field(default=86_400.0, gt=0, le=86_400 * 30)
    webhook_client_error_attempts: int = Field(default=3, ge=1, le=100)
    #: deliveries one delivery worker sends at once (each to its own commitment)
    webhook_concurrency: int = Field(default=8, ge=1, le=64)
    #: screening policy files, relative to the config directory
    jurisdictions_file: Path = Path("jurisdictions.toml")
    limits_file: Path = Path("limits.toml")

    @field_validator("four_eyes_threshold", mode="before")
    @classmethod
    def _no_float_money(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError("give the amount as a decimal string, not a float")
        return value

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value and not value.startswith(
            ("postgresql://", "postgresql+psycopg://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("xrpl_explorer_tx_url", "stellar_explorer_tx_url")
    @classmethod
    def _explorer_template(cls, value: str) -> str:
        if value and (not value.startswith(("https://", "http://")) or EXPLORER_HASH not in value):
            raise ValueError(f"must be an http(s) URL with {EXPLORER_HASH} where the hash goes")
        return value

    @model_validator(mode="after")
    def _margins(self) -> Settings:
        if self.dvp_commit_send_margin_s >= self.dvp_safety_margin_s:
            raise ValueError(
                "dvp_commit_send_margin_s must be below dvp_safety_margin_s: a finish "
                "signed at the margin must still have time to apply before T_cancel"
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def stellar_channel_accounts(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.stellar_channels.split(",") if a.strip())

    @property
    def xrpl_ticket_holders(self) -> tuple[str, ...]:
        named = tuple(a.strip() for a in self.xrpl_ticket_accounts.split(",") if a.strip())
        return named or (self.xrpl_agent,)

    @property
    def explorer_tx_urls(self) -> dict[str, str]:
        """Chain name -> explorer URL template with ``{hash}``, for the chains that have one."""
        named = {"xrpl": self.xrpl_explorer_tx_url, "stellar": self.stellar_explorer_tx_url}
        return {chain: template for chain, template in named.items() if template}

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url

    def config_path(self, path: Path) -> Path:
        """``path`` as given if absolute, else inside the config directory."""
        return path if path.is_absolute() else config_dir() / path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment wins over the files, which arrive as init arguments
        return (env_settings, init_settings)


def config_dir() -> Path:
    """``SETTLEMENT_CONFIG_DIR``, else ./config, else the config/ beside the packages."""
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG_DIR")
    if explicit:
        return Path(explicit)
    local = Path.cwd() / "config"
    if (local / "default.toml").is_file():
        return local
    return Path(__file__).resolve().parent.parent / "config"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the files and the environment; ``overrides`` win over files."""
    directory = config_dir()
    values = _read_toml(directory / "default.toml")
    network = (
        overrides.get("network")
        or os.environ.get(f"{ENV_PREFIX}NETWORK")
        or values.get("network", "local")
    )
    if network not in ("local", "testnet"):
        raise SettingsError(f"{ENV_PREFIX}NETWORK: must be 'local' or 'testnet', got {network!r}")
    values.update(_read_toml(directory / "networks" / f"{network}.toml"))
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
