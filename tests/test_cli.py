"""The command line: serve refuses a public address without keys; config hides keys."""

from __future__ import annotations

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
