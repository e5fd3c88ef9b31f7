"""Where settings come from, which wins, and that secrets never leak."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sfduck_core
from sfduck_core.config import load_settings
from sfduck_core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_no_account_anywhere_means_demo_mode(tmp_path: Path) -> None:
    settings = load_settings(env={}, dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "secrets.toml")
    assert settings.demo is True
    root = Path(__file__).resolve().parents[2]  # the app's folder, whatever the working directory
    assert settings.duckdb_path == root / "data" / "sfduck.duckdb" and settings.data_dir == root / "data"


def test_environment_beats_dotenv_beats_secrets(tmp_path: Path) -> None:
    secrets = write(tmp_path / "secrets.toml", '[connections.snowflake]\naccount = "from_secrets"\n'
                                                'user = "secret_user"\npassword = "pw1"\nwarehouse = "WH_S"\n'
                                                'role = "R_S"\n')
    dotenv = write(tmp_path / ".env", "SNOWFLAKE_ACCOUNT=from_dotenv\nSNOWFLAKE_WAREHOUSE=WH_D\n")
    settings = load_settings(env={"SNOWFLAKE_ACCOUNT": "from_env"}, dotenv_path=dotenv, secrets_path=secrets)
    sf = settings.snowflake
    assert (sf.account, sf.warehouse, sf.role, sf.user) == ("from_env", "WH_D", "R_S", "secret_user")
    assert settings.demo is False


def test_password_never_appears_in_repr_or_errors(tmp_path: Path) -> None:
    settings = load_settings(env={"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u",
                                  "SNOWFLAKE_PASSWORD": "hunter2-secret"},
                             dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "s.toml")
    assert "hunter2-secret" not in repr(settings)
    assert settings.snowflake.connect_kwargs()["password"] == "hunter2-secret"
    assert settings.snowflake.connect_kwargs()["session_parameters"]["TIMEZONE"] == "UTC"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u"}, "no credentials"),
        ({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_PASSWORD": "p"}, "SNOWFLAKE_USER"),
        ({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u", "SNOWFLAKE_PASSWORD": "p", "SNOWFLAKE_PORT": "x"},
         "must be a number"),
    ],
)
def test_incomplete_configuration_is_a_clear_error(tmp_path: Path, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env, dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "s.toml")


def test_key_pair_auth_needs_no_password(tmp_path: Path) -> None:
    settings = load_settings(env={"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u",
                                  "SNOWFLAKE_PRIVATE_KEY_FILE": "/keys/rsa.p8"},
                             dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "s.toml")
    assert settings.snowflake.connect_kwargs()["private_key_file"] == "/keys/rsa.p8"


def test_the_core_never_imports_streamlit() -> None:
    modules = [f"sfduck_core.{m.name}" for m in pkgutil.iter_modules(sfduck_core.__path__)
               if m.name != "__main__"]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
            "assert not bad, bad\n"
            "print(len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert len(modules) >= 10


def test_paths_are_absolute_and_do_not_depend_on_the_working_directory(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9 item 8: relative to the file that set them, the cwd for the environment's."""
    project = tmp_path / "project"
    dotenv = write(project / ".env", "SFDUCK_DUCKDB_PATH=state/x.duckdb\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from_file = load_settings(env={}, dotenv_path=dotenv, secrets_path=tmp_path / "s.toml")
    assert from_file.duckdb_path == project / "state" / "x.duckdb"
    from_env = load_settings(env={"SFDUCK_DATA_DIR": "d"}, dotenv_path=dotenv, secrets_path=tmp_path / "s.toml")
    assert from_env.data_dir == elsewhere / "d" and from_env.duckdb_path.is_absolute()


def test_settings_files_are_found_where_streamlit_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9 item 3: the home folder's secrets count, from any working directory."""
    home = tmp_path / "home"
    write(home / ".streamlit" / "secrets.toml", '[connections.snowflake]\naccount = "acme"\nuser = "u"\n'
                                                'password = "p"\n')
    monkeypatch.setattr(Path, "home", lambda: home)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(env={})
    assert settings.demo is False and settings.snowflake.account == "acme"
    assert str(home / ".streamlit" / "secrets.toml") in settings.files_read
    assert "account acme" in settings.describe() and "secrets.toml" in settings.describe()


def test_demo_mode_refuses_to_start_beside_a_users_file_unless_asked(tmp_path: Path) -> None:
    users = write(tmp_path / "users.yaml", "users: {}\n")
    with pytest.raises(ConfigError, match="users file exists.*SFDUCK_DEMO=1"):
        load_settings(env={"SFDUCK_USERS_FILE": str(users)}, dotenv_path=tmp_path / ".env",
                      secrets_path=tmp_path / "s.toml")
    asked = load_settings(env={"SFDUCK_USERS_FILE": str(users), "SFDUCK_DEMO": "1"},
                          dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "s.toml")
    assert asked.demo is True


def test_the_metadata_url_is_checked_and_its_password_never_shown(tmp_path: Path) -> None:
    """Issue 21 item 2: SFDUCK_METADATA_URL names SQLite or PostgreSQL; a plain postgresql:// URL
    gets the driver sfduck ships with; the password stays out of repr and errors."""
    def load(url: str) -> object:
        return load_settings(env={"SFDUCK_METADATA_URL": url}, dotenv_path=tmp_path / ".env",
                             secrets_path=tmp_path / "s.toml")

    assert load_settings(env={}, dotenv_path=tmp_path / ".env", secrets_path=tmp_path / "s.toml").metadata_url is None
    settings = load("postgresql://ann:s3cret@db.example/meta")
    assert settings.metadata_url == "postgresql+psycopg://ann:s3cret@db.example/meta"
    assert "s3cret" not in repr(settings)
    with pytest.raises(ConfigError, match="SFDUCK_METADATA_URL must be") as info:
        load("mysql://ann:s3cret@db/meta")
    assert "s3cret" not in str(info.value)


def test_the_data_wait_is_a_validated_setting(tmp_path: Path) -> None:
    """SFDUCK_DATA_WAIT: how long a sync waits for a DuckDB file another program holds."""
    def settings(env: dict[str, str]):
        return load_settings(env, dotenv_path=tmp_path / "none.env", secrets_path=tmp_path / "none.toml")

    assert settings({}).data_wait_s == 300
    assert settings({"SFDUCK_DATA_WAIT": "45"}).data_wait_s == 45
    for bad in ("0", "-1", "soon", "nan"):
        with pytest.raises(ConfigError, match="SFDUCK_DATA_WAIT must be a positive number"):
            settings({"SFDUCK_DATA_WAIT": bad})
