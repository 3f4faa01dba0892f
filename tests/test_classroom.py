"""Roles, the instructor code, rate limits and the Join address: the core of the class."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_demo import classroom
from mnist_demo.classroom import (
    Action,
    CodeError,
    PermissionDeniedError,
    RateLimitedError,
    RateLimiter,
    Role,
    check_code,
    require,
)
from mnist_demo.errors import DigitLabError


@pytest.fixture
def code(monkeypatch) -> str:
    monkeypatch.setenv(classroom.CODE_ENV, "s3cret-Code_42")
    return "s3cret-Code_42"


@pytest.mark.parametrize("action", list(Action))
def test_only_the_instructor_may_act(action):
    require(Role.INSTRUCTOR, action)  # no error
    with pytest.raises(PermissionDeniedError) as caught:
        require(Role.STUDENT, action)
    assert str(caught.value) == f"Only the instructor can {action.value}."
    assert isinstance(caught.value, DigitLabError)


def test_the_cli_runs_as_the_owner():
    require(classroom.OWNER, Action.DELETE_RUNS)


def test_the_right_code_passes_and_surrounding_spaces_do_not_matter(code):
    check_code(code)
    check_code(f"  {code}\n")


@pytest.mark.parametrize(
    ("attempt", "message"),
    [
        ("", "Enter the instructor code"),
        ("   ", "Enter the instructor code"),
        ("s3cret-Code_4", "Wrong instructor code"),
        ("S3CRET-CODE_42", "Wrong instructor code"),
        ("x" * 10_000, "not an instructor code"),
        ("s3cret-Code_42" + "x" * 200, "not an instructor code"),
    ],
    ids=["empty", "spaces", "prefix", "case", "very-long", "right-then-long"],
)
def test_wrong_empty_and_very_long_codes_are_refused(code, attempt, message):
    with pytest.raises(CodeError, match=message):
        check_code(attempt)


def test_without_a_configured_code_the_server_makes_one_and_keeps_it(monkeypatch):
    monkeypatch.delenv(classroom.CODE_ENV, raising=False)
    monkeypatch.setattr(classroom, "_process_code", None)
    first = classroom.instructor_code()
    assert len(first) >= 12 and first == classroom.instructor_code()
    check_code(first)
    monkeypatch.setattr(classroom, "_process_code", None)
    assert classroom.instructor_code() != first, "random per server, not a constant"


def test_the_instructor_link_carries_the_code(code):
    assert classroom.instructor_link("http://10.0.0.5:8501/") == (
        f"http://10.0.0.5:8501/?code={code}"
    )


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False)])
def test_solo_mode_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv(classroom.SOLO_ENV, value)
    assert classroom.solo() is expected


# --- rate limits --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_the_limit_then_refuses_with_the_wait():
    clock = Clock()
    limiter = RateLimiter("code attempts", 5, 60, clock=clock)
    for _ in range(5):
        limiter.take()
        clock.now += 2
    assert limiter.remaining() == 0
    with pytest.raises(RateLimitedError, match=r"at most 5 per minute\. Try again in 50 s"):
        limiter.take()
    clock.now += 50  # the first try leaves the window
    limiter.take()
    with pytest.raises(RateLimitedError):
        limiter.take()


def test_refused_requests_do_not_extend_the_wait():
    clock = Clock()
    limiter = RateLimiter("uploads", 2, 60, clock=clock)
    limiter.take()
    limiter.take()
    for waited in range(1, 21):  # hammering while blocked, once a second
        clock.now += 1
        with pytest.raises(RateLimitedError, match=rf"Try again in {60 - waited} s"):
            limiter.take()
    clock.now += 40  # a minute after the two that counted; the refused ones never did
    assert limiter.remaining() == 2
    limiter.take()
    limiter.take()


def test_each_student_session_gets_its_own_budgets():
    clock = Clock()
    a, b = classroom.student_limiters(clock), classroom.student_limiters(clock)
    for _ in range(5):
        a["code"].take()
    with pytest.raises(RateLimitedError, match="code attempts"):
        a["code"].take()
    b["code"].take()  # another session is not affected
    assert a["upload"].remaining() == classroom.STUDENT_LIMITS["upload"][1]


# --- joining ------------------------------------------------------------------------------


def test_join_url_uses_the_lan_address_when_serving_every_interface(monkeypatch):
    monkeypatch.setattr(classroom, "lan_address", lambda: "192.168.1.20")
    assert classroom.join_url("0.0.0.0", 8501) == "http://192.168.1.20:8501/"
    assert classroom.join_url(None, 8501) == "http://192.168.1.20:8501/"  # unset: all
    assert classroom.join_url("10.1.2.3", 8600, "lab/") == "http://10.1.2.3:8600/lab/"
    local = classroom.join_url("127.0.0.1", 8501)
    assert local == "http://localhost:8501/" and classroom.serves_only_this_machine(local)
    assert not classroom.serves_only_this_machine("http://192.168.1.20:8501/")


def test_lan_address_is_an_ipv4_address_of_this_machine():
    address = classroom.lan_address()
    parts = address.split(".")
    assert len(parts) == 4 and all(0 <= int(p) <= 255 for p in parts)


def test_qr_code_decodes_to_the_join_url(tmp_path):
    zxingcpp = pytest.importorskip("zxingcpp")
    url = "http://192.168.1.20:8501/"
    path = tmp_path / "qr.png"
    path.write_bytes(classroom.qr_png(url))
    image = Image.open(path).convert("L")
    assert min(image.size) >= 250, "large enough to scan off a projector"
    results = zxingcpp.read_barcodes(np.asarray(image))
    assert [r.text for r in results] == [url]
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
