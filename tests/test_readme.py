"""The README is the front door: it must keep telling the truth about the commands and the sandbox."""

from __future__ import annotations

from pathlib import Path

from app.kit.settings import Settings
from dev.sandbox.seed import (
    BULK_CODE_COUNT,
    BULK_CODE_FAMILY,
    BULK_ITEM_ID_PREFIX,
    BULK_WINDOW_DAYS,
    DEMO_CODES,
    OWN_POSTS,
    OwnPost,
    bulk_code,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


class TestReadme:
    def test_shows_the_two_commands_first(self) -> None:
        first_block = README.split("```sh", 1)[1].split("```", 1)[0]
        assert "make run" in first_block
        assert "make test" in first_block

    def test_lists_every_sandbox_code(self) -> None:
        missing = [demo.code for demo in DEMO_CODES if f"`{demo.code}`" not in README]
        assert not missing, f"add these sandbox codes to the README: {missing}"

    def test_lists_the_bulk_code_family_in_one_row(self) -> None:
        rows = [line for line in README.splitlines() if line.startswith(f"| `{BULK_CODE_FAMILY}` |")]
        assert len(rows) == 1, f"add one README row for the sandbox's bulk codes, `{BULK_CODE_FAMILY}`"
        (row,) = rows
        for wanted in (
            f"`{bulk_code(0)}`",
            f"`{bulk_code(BULK_CODE_COUNT - 1)}`",
            f"`{BULK_ITEM_ID_PREFIX}`",
            f"{BULK_WINDOW_DAYS}-day window",
        ):
            assert wanted in row, f"the README's bulk code row should say {wanted}"

    def test_lists_every_own_post_with_its_identity(self) -> None:
        rows = [line for line in README.splitlines() if line.startswith("| `")]

        def listed(post: OwnPost) -> bool:
            identity = post.identity
            wanted = [post.item_id, identity.identity_type, identity.identity_id]
            if identity.identity_authorized_bc_id is not None:
                wanted.append(identity.identity_authorized_bc_id)
            return any(all(f"`{value}`" in row for value in wanted) for row in rows)

        missing = [post.item_id for post in OWN_POSTS if not listed(post)]
        assert not missing, f"add these sandbox own posts to the README, with their identity: {missing}"

    def test_documents_every_setting(self) -> None:
        missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
        assert not missing, f"add these settings to the README: {missing}"
