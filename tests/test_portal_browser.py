"""The student portal in a real browser: Debian's headless chromium (installed by `make test`'s
`browser` prerequisite), driven by playwright (which downloads no browser), against
`sagelab class portal`'s server on 127.0.0.1. Screenshots go to test-artifacts/portal/ (ignored by git)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagelab.local.portal import LocalPortal
from tests.conftest import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# For this machine: no sandbox (root in a container), no GPU, no network beyond 127.0.0.1.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "portal"
ROSTER = "student_id,email\nalice,alice@example.edu\nbob,bob@example.edu\n"


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[LocalPortal]:
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    server = LocalPortal(roster, tmp_path / "work", ["teacher@example.edu"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module (each launch was 1.5-2 s of CPU); every test gets a
    context of its own below."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # A fresh context per test: its own cookies, session and local storage, as a fresh profile had.
    context = browser.new_context(viewport={"width": 420, "height": 860})
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Any, portal: LocalPortal, email: str) -> None:
    page.goto(f"{portal.url}/")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Sign in").click()


def test_portal_student_signs_in_and_reaches_their_own_notebook(portal: LocalPortal, page: Any) -> None:
    sign_in(page, portal, "alice@example.edu")
    button = page.get_by_role("button", name="Open my notebook")
    button.wait_for()
    assert page.locator("#who").text_content() == "Signed in as alice (alice@example.edu)"
    assert "'2. Run the pipeline'" in page.locator("#next-step").text_content()
    # Readable on a phone: nothing wider than the 420-pixel viewport.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(ARTIFACTS / "student-page.png"), full_page=True)
    # Keyboard only: the button takes focus and Enter opens the notebook.
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/notebook/alice?ticket=*")
    assert page.locator("h1").text_content() == "Notebook of alice"
    page.screenshot(path=str(ARTIFACTS / "student-notebook.png"))


def test_portal_browser_request_edited_to_name_another_student_is_refused(portal: LocalPortal, page: Any) -> None:
    sign_in(page, portal, "alice@example.edu")
    page.get_by_role("button", name="Open my notebook").wait_for()
    # What a student could do from the browser's console: the same request, naming bob.
    answer = page.evaluate(
        """async () => {
            const response = await fetch("students/bob/notebook", { headers: { Authorization: sessionStorage.getItem("id_token") } });
            return { status: response.status, body: await response.text() };
        }"""
    )
    assert answer["status"] == 403
    assert json.loads(answer["body"])["message"] == "you are signed in as 'alice' and may open only 'alice''s environment, not 'bob'"
    # And bob's stand-in notebook cannot be reached by editing alice's notebook link either.
    page.goto(f"{portal.url}/notebook/bob?ticket={portal.environments.ticket('alice')}")
    assert page.locator("h1").text_content() == "Not your notebook"
    page.screenshot(path=str(ARTIFACTS / "refused.png"))


def test_portal_browser_removed_roster_row_cannot_sign_in(portal: LocalPortal, page: Any) -> None:
    sign_in(page, portal, "bob@example.edu")
    page.get_by_role("button", name="Open my notebook").wait_for()
    portal.roster.write_text("student_id,email\nalice,alice@example.edu\n")  # bob's row removed
    # bob's open page loses access at the next request, and he cannot sign in again.
    page.reload()
    page.get_by_role("alert").filter(has_text="sign in first").wait_for()
    sign_in(page, portal, "bob@example.edu")
    alert = page.get_by_role("alert")
    assert alert.text_content() == "No student or course admin with the email bob@example.edu is on the class roster: ask your instructor."
    page.screenshot(path=str(ARTIFACTS / "removed-row.png"))


def test_portal_browser_admin_sees_the_class_report(portal: LocalPortal, page: Any) -> None:
    sign_in(page, portal, "teacher@example.edu")
    page.get_by_role("table", name="class report").wait_for()
    rows = page.locator("#class-rows tr")
    assert [rows.nth(i).locator("td").first.text_content() for i in range(rows.count())] == ["alice", "bob"]
    page.screenshot(path=str(ARTIFACTS / "admin-report.png"), full_page=True)


@pytest.mark.slow  # the session's trained digits run in a real browser
def test_portal_shows_a_students_local_run_and_the_next_step(trained_run: Any, tmp_path: Path) -> None:
    """A student's own local environment (<workdir>/students/<id>/, where they ran the pipeline)
    is what their page shows, over real HTTP with a token of the local sign-in."""
    import httpx

    from sagelab.local.portal import Account

    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    (tmp_path / "work" / "students").mkdir(parents=True)
    shutil.copytree(trained_run.workdir / "executions", tmp_path / "work" / "students" / "alice" / "executions")
    server = LocalPortal(roster, tmp_path / "work").start()
    try:
        alice = httpx.get(f"{server.url}/students/alice", headers={"Authorization": server.sign_in.token(Account("alice", "alice@example.edu", ()))}).json()
        bob = httpx.get(f"{server.url}/students/bob", headers={"Authorization": server.sign_in.token(Account("bob", "bob@example.edu", ()))}).json()
    finally:
        server.stop()
    assert alice["last_run_status"] == "Succeeded" and "'4. Evaluate: metrics and plots'" in alice["next_step"]
    assert bob["last_run"] == "none" and "'2. Run the pipeline'" in bob["next_step"]


def test_portal_command_serves_the_page(tmp_path: Path) -> None:
    """`sagelab class portal` as an admin starts it: it prints its address and serves the page."""
    import subprocess
    import sys

    import httpx

    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    command = [sys.executable, "-m", "sagelab", "class", "portal", "--roster", str(roster), "--port", "0", "--workdir", str(tmp_path / "work")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("student portal: http://127.0.0.1:"), line + (process.stderr.read() if process.poll() is not None else "")
        url = line.split()[2]
        page = httpx.get(url)
        assert page.status_code == 200 and "<title>SageLab: my lab environment</title>" in page.text
        refused = httpx.get(f"{url}students/alice")
        assert refused.status_code == 401 and refused.json()["message"].startswith("sign in first")
    finally:
        process.terminate()
        process.wait(timeout=30)
