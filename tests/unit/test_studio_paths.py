"""The studio's rules without a server: which names lead inside its folder, which binds need a token."""

from __future__ import annotations

import pytest

from tunesmith.errors import UserError
from tunesmith.studio.security import check_bind, inside, is_local


def test_only_names_inside_the_folder_resolve(tmp_path):
    root = (tmp_path / "runs").resolve()
    (root / "team" / "demo").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "out").symlink_to(tmp_path / "secret", target_is_directory=True)
    (root / "in").symlink_to(root / "team", target_is_directory=True)
    assert inside(root, "team/demo") == root / "team" / "demo"
    assert inside(root, "in/demo") == root / "team" / "demo"  # a symlink that stays inside is followed
    for name in (
        "",
        "../secret",
        "team/../../secret",
        "/etc/passwd",
        "out",
        "out/x",
        "team\\..\\..",
        "a\x00b",
    ):
        with pytest.raises(UserError, match="not a path inside"):
            inside(root, name)


def test_a_network_bind_needs_a_long_token():
    assert is_local("127.0.0.1") and is_local("::1") and is_local("localhost") and not is_local("0.0.0.0")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "x" * 16)
    with pytest.raises(UserError, match="--token-file"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UserError, match="at least 16"):
        check_bind("127.0.0.1", "short")
