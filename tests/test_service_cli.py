"""`serve` and `worker` (noisecraft.service.cli): every option has help, options reach the app's config, and a
worker with an empty queue exits cleanly."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from typer.testing import CliRunner  # noqa: E402

from noisecraft.service import cli  # noqa: E402


def test_every_option_has_help():
    import typer.main

    for function in (cli.serve, cli.worker):
        command = typer.main.get_command_from_info(
            typer.models.CommandInfo(callback=function), pretty_exceptions_short=True, rich_markup_mode=None)
        assert command.help
        for param in command.params:
            assert getattr(param, "help", None), f"{function.__name__} {param.name} has no help"


def test_serve_options_reach_the_app(monkeypatch, tmp_path):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    result = CliRunner().invoke(cli.app, ["serve", "--data-dir", str(tmp_path / "data"), "--port", "9999",
                                          "--workers", "3", "--max-queue", "7", "--no-shipped", "--device", "cpu",
                                          "--max-upload-pixels", "100"], env={"NOISECRAFT_TOKEN": "t0k"})
    assert result.exit_code == 0, result.output
    config = seen["app"].state.config
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 9999)
    assert (config.workers, config.max_queue, config.token, config.devices) == (3, 7, "t0k", ["cpu"])
    assert config.max_upload_pixels == 100 and not config.include_shipped
    assert (tmp_path / "data" / "jobs.sqlite").is_file()


def test_serve_warns_when_it_serves_the_network_without_a_token(monkeypatch, tmp_path):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    result = CliRunner().invoke(cli.app, ["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--no-shipped"],
                                env={"NOISECRAFT_TOKEN": ""})
    assert result.exit_code == 0 and "without --token" in result.output


def test_a_worker_with_an_empty_queue_exits_when_idle(tmp_path):
    result = CliRunner().invoke(cli.app, ["worker", "--data-dir", str(tmp_path), "--exit-when-idle"])
    assert result.exit_code == 0 and "stopped after 0 job(s)" in result.output
