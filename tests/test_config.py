from pathlib import Path

import pytest
from pydantic import SecretStr

from apr_mcp.config import NOT_CONFIGURED, Settings, load_settings
from apr_mcp.errors import ConfigError


def test_env_names_are_the_public_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APR_BACKEND", "OpenAI")
    monkeypatch.setenv("APR_BASE_URL", "http://127.0.0.1:11434/v1/")
    monkeypatch.setenv("APR_API_KEY", "sk-secret-123456")
    monkeypatch.setenv("APR_MODEL", "llama3.1")
    monkeypatch.setenv("APR_PLANNER_MODEL", "small")
    monkeypatch.setenv("APR_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("APR_CACHE", "off")
    s = load_settings()
    assert s.backend == "openai"
    assert s.effective_base_url() == "http://127.0.0.1:11434/v1"
    assert s.effective_api_key() == "sk-secret-123456"
    assert s.role_model("planner") == "small"
    assert s.role_model("merger") == "llama3.1"
    assert s.max_concurrency == 3
    assert s.cache is False


def test_provider_variables_are_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    s = load_settings(backend="openai", model="m")
    assert s.effective_api_key() == "sk-from-openai"
    assert s.effective_base_url() == "http://localhost:8000/v1"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-anthropic")
    assert load_settings(backend="anthropic", model="m").effective_api_key() == "ak-anthropic"


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APR_MODEL", "env-model")
    assert load_settings(model="flag-model").model == "flag-model"
    assert load_settings(model=None).model == "env-model"


def test_config_file_fills_what_env_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('backend = "simulated"\nmax_concurrency = 5\nmodel = "file-model"\n')
    monkeypatch.setenv("APR_CONFIG", str(cfg))
    monkeypatch.setenv("APR_MODEL", "env-model")
    s = load_settings()
    assert s.backend == "simulated" and s.max_concurrency == 5
    assert s.model == "env-model"


def test_bad_values_give_config_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APR_MAX_CONCURRENCY", "lots")
    with pytest.raises(ConfigError, match="APR_MAX_CONCURRENCY"):
        load_settings()
    monkeypatch.delenv("APR_MAX_CONCURRENCY")
    with pytest.raises(ConfigError, match="APR_MIN_THREADS"):
        load_settings(min_threads=9, max_threads=4)
    bad = tmp_path / "bad.toml"
    bad.write_text("backend = ")
    monkeypatch.setenv("APR_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="bad.toml"):
        load_settings()


def test_unconfigured_backend_explains_how_to_configure() -> None:
    with pytest.raises(ConfigError) as info:
        Settings().require_backend()
    assert str(info.value) == NOT_CONFIGURED
    assert "APR_BACKEND=openai" in NOT_CONFIGURED and "--backend simulated" in NOT_CONFIGURED
    with pytest.raises(ConfigError, match="APR_MODEL"):
        Settings(backend="openai").require_backend()
    assert Settings(backend="simulated").require_backend() == "simulated"


def test_masked_hides_secrets() -> None:
    s = Settings(
        backend="openai",
        model="m",
        api_key=SecretStr("sk-abcdefghijklmnop"),
        http_token=SecretStr("tok"),
    )
    masked = s.masked()
    text = repr(masked)
    assert "sk-abcdefghijklmnop" not in text and "tok'" not in text
    assert masked["api_key"] == "sk-…mnop"
    assert masked["http_token"] == "****"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "APR_BACKEND",
            "bogus",
            (
                "APR_BACKEND=bogus is not valid: expected one of openai, "
                "anthropic, sampling, simulated"
            ),
        ),
        (
            "APR_MAX_CONCURRENCY",
            "abc",
            ("APR_MAX_CONCURRENCY=abc is not valid: expected a whole number from 1 to 64"),
        ),
        ("APR_CACHE", "maybe", "APR_CACHE=maybe is not valid: expected on or off"),
        ("APR_DEADLINE_S", "-1", "APR_DEADLINE_S=-1 is not valid: expected a number more than 0"),
    ],
)
def test_config_errors_name_the_variable_and_allowed_values_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message == f"invalid configuration: {expected}"
    assert "\n" not in message and "pydantic" not in message and "validation error" not in message


def test_secrets_are_never_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APR_API_KEY", "sk-very-secret")
    monkeypatch.setenv("APR_MAX_RETRIES", "many")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "sk-very-secret" not in str(info.value) and "APR_MAX_RETRIES=many" in str(info.value)


def test_toml_values_are_validated_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("max_concurrency = 0\n")
    monkeypatch.setenv("APR_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "APR_MAX_CONCURRENCY=0" in str(info.value) and str(cfg) in str(info.value)


def test_apr_variables_beat_provider_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-provider")
    monkeypatch.setenv("APR_API_KEY", "sk-apr")
    assert load_settings(backend="openai", model="m").effective_api_key() == "sk-apr"
    monkeypatch.delenv("APR_API_KEY")
    # Each backend reads its own provider's key, never the other's.
    assert load_settings(backend="anthropic", model="m").effective_api_key() == "ak-provider"
    assert load_settings(backend="simulated").effective_api_key() is None
    masked = repr(load_settings(backend="openai", model="m").masked())
    assert "sk-provider" not in masked and "ak-provider" not in masked


def test_runs_dir_and_config_file_are_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APR_RUNS_DIR", str(tmp_path / "r"))
    s = load_settings()
    assert s.effective_runs_dir() == tmp_path / "r"
    assert s.masked()["config"] == str(tmp_path / "no-config.toml")  # conftest's APR_CONFIG


def test_no_environment_reads_outside_config() -> None:
    """Settings come only from pydantic-settings sources, declared in apr_mcp/config.py."""
    root = Path(__file__).resolve().parents[1] / "apr_mcp"
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if any(read in p.read_text(encoding="utf-8") for read in ("os.environ", "getenv("))
    ]
    assert offenders == []
