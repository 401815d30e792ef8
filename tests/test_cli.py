"""The command line: serve refuses a public address without keys; config hides keys."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from app.cli import main


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


def test_models_fetch_skips_packaged_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "fetch", "arcface-mbf"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out
    assert main(["models", "fetch", "no-such-model"]) == 2


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
    from app.cli import _lock_data_dir

    monkeypatch.setenv("FACE_DATA_DIR", str(tmp_path / "data"))
    held = _lock_data_dir(tmp_path / "data")  # as a running service holds it
    assert held is not None
    try:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        assert "another service is running on" in capsys.readouterr().err
    finally:
        held.close()
    again = _lock_data_dir(tmp_path / "data")  # free once the holder is gone
    assert again is not None
    again.close()


def test_serve_names_a_data_folder_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    in_the_way = tmp_path / "data"
    in_the_way.write_text("a file where the data folder should be")
    monkeypatch.setenv("FACE_DATA_DIR", str(in_the_way))
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert main(["serve", "--port", str(port)]) == 2
    assert f"cannot use FACE_DATA_DIR={in_the_way}" in capsys.readouterr().err
