"""Marathon path ids: relative resolution, double slashes, segment rules, parents (Marathon A1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butte.core.errors import ValidationError
from butte.frameworks.marathon.pathid import (
    ROOT,
    ancestors,
    canonical,
    is_under,
    parent,
    safe_id,
    segment_errors,
    segments,
)


@pytest.mark.parametrize(
    ("path", "base", "expected"),
    [
        ("my-app", "/", "/my-app"),
        ("/my-app", "/shop", "/my-app"),
        ("web", "/shop", "/shop/web"),
        ("./web", "/shop", "/shop/web"),
        ("../db", "/shop/web", "/shop/db"),
        ("//my-app", "/", "/my-app"),
        ("/shop//web/", "/", "/shop/web"),
        ("/", "/shop", "/"),
        ("", "/shop", "/shop"),
        ("a/b/../c", "/", "/a/c"),
    ],
)
def test_canonical_resolves_against_the_base(path: str, base: str, expected: str) -> None:
    assert canonical(path, base) == expected


@pytest.mark.parametrize(("path", "base"), [("..", "/"), ("/../a", "/"), ("../../x", "/shop")])
def test_climbing_above_the_root_is_an_id_error(path: str, base: str) -> None:
    with pytest.raises(ValidationError) as caught:
        canonical(path, base)
    assert caught.value.field == "id"


@pytest.mark.parametrize("path", ["/my-app", "/shop/web.v2", "a1/b-2", "../x", "/", "//x"])
def test_valid_segments_have_no_errors(path: str) -> None:
    assert segment_errors(path) == []


@pytest.mark.parametrize("path", ["/My-App", "/-app", "/app-", "/a_b", "/a..b", "/shop/web!", "/a b"])
def test_invalid_segments_get_marathons_message(path: str) -> None:
    errors = segment_errors(path)
    assert len(errors) == 1
    assert errors[0].startswith("must fully match regular expression '^(([a-z0-9]")


def test_parent_and_ancestors() -> None:
    assert parent("/a/b/c") == "/a/b"
    assert parent("/a") == ROOT
    assert parent(ROOT) == ROOT
    assert ancestors("/a/b/c") == ["/a/b", "/a", "/"]
    assert ancestors(ROOT) == []


def test_is_under_is_strict() -> None:
    assert is_under("/a/b", "/a")
    assert is_under("/a", ROOT)
    assert not is_under("/a", "/a")
    assert not is_under("/ab", "/a")
    assert not is_under(ROOT, ROOT)


def test_safe_id_is_the_task_id_prefix() -> None:
    assert safe_id("/shop/web") == "shop_web"
    assert safe_id("/my-app") == "my-app"


_valid_segment = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_token = st.one_of(_valid_segment, st.sampled_from([".", "..", ""]))


@given(st.lists(_token, max_size=8), st.booleans(), st.lists(_valid_segment, max_size=3))
def test_canonical_of_valid_segments_is_valid_or_raises(tokens: list[str], absolute: bool, base: list[str]) -> None:
    path = ("/" if absolute else "") + "/".join(tokens)
    try:
        result = canonical(path, "/" + "/".join(base))
    except ValidationError:
        return
    assert result.startswith("/")
    assert result == ROOT or not result.endswith("/")
    assert "." not in segments(result) and ".." not in segments(result)
    assert segment_errors(result) == []


@given(st.text(alphabet="ab./-", max_size=20), st.text(alphabet="ab/", max_size=8))
def test_canonical_is_idempotent(path: str, base: str) -> None:
    try:
        once = canonical(path, canonical(base))
    except ValidationError:
        return
    assert canonical(once) == once
    assert canonical(once, "/elsewhere") == once
