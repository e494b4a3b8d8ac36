"""The README is the front door: it must keep telling the truth about the commands and the sandbox."""

from __future__ import annotations

from pathlib import Path

from app.kit.settings import Settings
from dev.sandbox.seed import DEMO_CODES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


class TestReadme:
    def test_shows_the_two_commands_first(self) -> None:
        first_block = README.split("```sh", 1)[1].split("```", 1)[0]
        assert "make run" in first_block
        assert "make test" in first_block

    def test_lists_every_sandbox_code(self) -> None:
        missing = [demo.code for demo in DEMO_CODES if f"`{demo.code}`" not in README]
        assert not missing, f"add these sandbox codes to the README: {missing}"

    def test_documents_every_setting(self) -> None:
        missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
        assert not missing, f"add these settings to the README: {missing}"
