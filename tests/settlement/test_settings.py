"""Settings load from config/ and the environment, and bad ones name themselves."""

from __future__ import annotations

import pytest

from settlement.settings import SettingsError, load_settings


def test_defaults_and_network_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SETTLEMENT_NETWORK", raising=False)
    settings = load_settings()
    assert settings.network == "local"
    assert settings.stellar_network_passphrase == "Standalone Network ; February 2017"


def test_environment_overrides_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETTLEMENT_NETWORK", "testnet")
    monkeypatch.setenv("SETTLEMENT_POOL_SIZE", "3")
    settings = load_settings()
    assert settings.stellar_network_passphrase == "Test SDF Network ; September 2015"
    assert settings.pool_size == 3


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SETTLEMENT_POOL_SIZE", "many", "SETTLEMENT_POOL_SIZE"),
        ("SETTLEMENT_POOL_SIZE", "0", "SETTLEMENT_POOL_SIZE"),
        ("SETTLEMENT_DATABASE_URL", "mysql://x/y", "SETTLEMENT_DATABASE_URL"),
        ("SETTLEMENT_NETWORK", "mainnet", "SETTLEMENT_NETWORK"),
        ("SETTLEMENT_LOG_LEVEL", "LOUD", "SETTLEMENT_LOG_LEVEL"),
        (
            "SETTLEMENT_XRPL_EXPLORER_TX_URL",
            "https://x.example/tx/",  # no {hash}: every link would be the same page
            "SETTLEMENT_XRPL_EXPLORER_TX_URL",
        ),
        (
            "SETTLEMENT_STELLAR_EXPLORER_TX_URL",
            "javascript:alert('{hash}')",
            "SETTLEMENT_STELLAR_EXPLORER_TX_URL",
        ),
    ],
)
def test_bad_settings_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()


def test_explorer_links_are_off_locally_and_on_for_the_testnets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SETTLEMENT_NETWORK", raising=False)
    assert load_settings().explorer_tx_urls == {}
    assert load_settings(network="testnet").explorer_tx_urls == {
        "xrpl": "https://testnet.xrpl.org/transactions/{hash}",
        "stellar": "https://stellar.expert/explorer/testnet/tx/{hash}",
    }
    monkeypatch.setenv("SETTLEMENT_STELLAR_EXPLORER_TX_URL", "")
    assert load_settings(network="testnet").explorer_tx_urls.keys() == {"xrpl"}
