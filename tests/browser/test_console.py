"""The web console in a real browser (issue #16): Debian's chromium, headless, driven by
Selenium through chromium-driver (installed by .ci/run when missing; no browser download).
Each test saves screenshots under its tmp dir."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from rems_ingest.demo import oru
from tests.process import BIN, DaemonProcess

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")), reason="Debian chromium and chromium-driver (.ci/run installs them)")

START = date.today() - timedelta(days=20)


def _send(d: DaemonProcess, *messages: bytes) -> None:
    import asyncio

    from rems_ingest.adapters.mllp.client import MllpClient

    async def go() -> None:
        async with MllpClient("127.0.0.1", d.mllp_port) as c:
            for m in messages:
                assert b"MSA|AA" in await c.send(m)

    asyncio.run(go())


def _token(d: DaemonProcess, name: str, *roles: str, pharmacy: str = "") -> str:
    args = [str(BIN), "token", "create", "--name", name, *[a for r in roles for a in ("--role", r)], *(["--pharmacy-id", pharmacy] if pharmacy else [])]
    made = subprocess.run(args, env=d.env, capture_output=True, text=True, timeout=60, check=True)
    return made.stdout.strip()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/console.db", "REMS_LOG__LEVEL": "WARNING"}).start()
    yield d
    d.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _login(browser: object, d: DaemonProcess, token: str) -> None:
    from selenium.webdriver.common.by import By

    b = browser
    b.delete_all_cookies()  # type: ignore[attr-defined]
    b.get(f"http://127.0.0.1:{d.http_port}/ui/login")  # type: ignore[attr-defined]
    b.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()  # type: ignore[attr-defined]
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(b, 15).until(lambda drv: "/ui/login" not in drv.current_url)  # the session cookie is set
    WebDriverWait(b, 15).until(lambda drv: drv.execute_script("return document.readyState") == "complete")


def _until(browser: object, condition: object, seconds: float = 15) -> None:
    """Wait for a page the click started: an element read while the old page goes away is stale,
    which only means "not yet"."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(drv: object) -> object:
        try:
            return condition(drv)  # type: ignore[operator]
        except WebDriverException as exc:  # chromium's own word for a stale node
            if "does not belong to the document" in str(exc.msg):
                return False
            raise

    WebDriverWait(browser, seconds, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(settled)  # type: ignore[arg-type]


def _count(browser: object, name: str) -> int:
    from selenium.webdriver.common.by import By

    return int(browser.find_element(By.ID, f"count-{name}").text)  # type: ignore[attr-defined]


def test_roles_worklists_chart_and_events_in_a_real_browser(daemon: DaemonProcess, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    b: object = browser
    d = daemon
    base = f"http://127.0.0.1:{d.http_port}"
    # two patients on therapy: general GP1 and BEN BEN1, both with the pharmacy RX1
    _send(d, oru("GP1-B", "GP1", START - timedelta(days=1), "1.8", "GP1-B"), oru("BEN1-B1", "BEN1", START - timedelta(days=2), "1.2", "BEN1-B1"), oru("BEN1-B2", "BEN1", START - timedelta(days=1), "1.1", "BEN1-B2"))
    assert 201 == d.http("POST", "/v1/patients", {"id": "GP1", "authority": "HOSP", "population": "general", "therapy_start": START.isoformat(), "prescriber_id": "DR1", "pharmacy_id": "RX1"})[0]
    assert 201 == d.http("POST", "/v1/patients", {"id": "BEN1", "authority": "HOSP", "population": "ben", "therapy_start": START.isoformat(), "baseline_anc": 1100, "prescriber_id": "DR1", "pharmacy_id": "RX1"})[0]
    prescriber, pharmacist, engineer = _token(d, "DR-JONES", "prescriber"), _token(d, "Main St pharmacy", "pharmacy", pharmacy="RX1"), _token(d, "lab-interface", "integration")
    auditor = _token(d, "privacy-officer", "auditor")

    # the prescriber's worklists change when the lab sends a moderate ANC over MLLP
    _login(b, d, prescriber)
    assert "Worklists" in b.title, b.page_source[:3000]  # type: ignore[attr-defined]
    holds_before = _count(b, "holds")
    # drawn with the lab's UTC offset, after an offset-free baseline: one history mixes both (#26)
    _send(d, oru("GP1-W1", "GP1", date.today(), "0.9", "GP1-W1").replace(b"0800|", b"0800-0500|"))
    b.get(base + "/ui/worklists")  # type: ignore[attr-defined]
    assert _count(b, "holds") == holds_before + 1
    assert any(r.get_attribute("data-patient") == "GP1" for r in b.find_elements(By.CSS_SELECTOR, "#holds tr.item"))  # type: ignore[attr-defined]
    b.save_screenshot(str(tmp_path / "worklists-prescriber.png"))  # type: ignore[attr-defined]

    # the chart: general bands and points, with the moderate result named in text
    b.get(base + "/ui/patients/GP1?authority=HOSP")  # type: ignore[attr-defined]
    assert "GP1 · rems-ingest" == b.title  # type: ignore[attr-defined]
    assert ["normal", "mild", "moderate", "severe"] == [e.get_attribute("data-band") for e in b.find_elements(By.CSS_SELECTOR, "svg .band")]  # type: ignore[attr-defined]
    points = b.find_elements(By.CSS_SELECTOR, "svg .point")  # type: ignore[attr-defined]
    assert ["1800", "900"] == [p.get_attribute("data-anc") for p in points]
    assert "moderate" == points[-1].get_attribute("data-category")
    assert "moderate" in b.find_element(By.ID, "category").text  # type: ignore[attr-defined]
    assert b.find_elements(By.CSS_SELECTOR, "svg rect.episode")  # type: ignore[attr-defined]  # the interruption is shaded
    assert "therapy interrupted for neutropenia" in b.find_element(By.TAG_NAME, "figcaption").text  # type: ignore[attr-defined]
    # a prescriber records a fever from the form, signed as themselves
    Select(b.find_element(By.ID, "type")).select_by_value("fever")  # type: ignore[attr-defined]
    b.find_element(By.ID, "temperature_c").send_keys("38.9")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#event-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: "DR-JONES" in drv.find_element(By.ID, "events").text and "fever" in drv.find_element(By.ID, "events").text)
    b.save_screenshot(str(tmp_path / "patient-general.png"))  # type: ignore[attr-defined]
    # a mis-click stops no one's therapy (#26): nothing is preselected; a discontinue asks how it
    # stops and, outside the care team (GP1 is DR1's), for glass broken; then it is confirmed with
    # what follows; entered in error, it is voided from the event list and shown struck through
    assert "" == Select(b.find_element(By.ID, "type")).first_selected_option.get_attribute("value")  # type: ignore[attr-defined]
    Select(b.find_element(By.ID, "type")).select_by_value("discontinue")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "input[name=stop][value=planned]").click()  # type: ignore[attr-defined]
    b.find_element(By.ID, "break_glass").click()  # type: ignore[attr-defined]
    b.find_element(By.ID, "break_glass_reason").send_keys("DR1 on leave, patient in clinic")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#event-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: drv.find_elements(By.ID, "consequence"))
    assert "stops clozapine" in b.find_element(By.ID, "consequence").text and "planned taper" in b.find_element(By.ID, "consequence").text  # type: ignore[attr-defined]
    assert "discontinue" not in b.find_element(By.ID, "events").text  # type: ignore[attr-defined]  # nothing recorded before the confirmation
    b.save_screenshot(str(tmp_path / "confirm-discontinue.png"))  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#confirm-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: drv.find_elements(By.CSS_SELECTOR, "#events tr.break-glass"))
    row = b.find_element(By.CSS_SELECTOR, "#events tr.break-glass")  # type: ignore[attr-defined]
    assert "BREAK GLASS" in row.text and "planned taper" in row.text
    row.find_element(By.NAME, "reason").send_keys("wrong patient")
    row.find_element(By.CSS_SELECTOR, ".void-form button").click()
    _until(b, lambda drv: drv.find_elements(By.CSS_SELECTOR, "#events tr.voided"))
    assert "VOID: DR-JONES: wrong patient" in b.find_element(By.CSS_SELECTOR, "#events tr.voided").text  # type: ignore[attr-defined]
    b.save_screenshot(str(tmp_path / "voided.png"))  # type: ignore[attr-defined]

    b.get(base + "/ui/patients/BEN1?authority=HOSP")  # type: ignore[attr-defined]
    assert ["normal", "ben_neutropenia", "severe"] == [e.get_attribute("data-band") for e in b.find_elements(By.CSS_SELECTOR, "svg .band")]  # type: ignore[attr-defined]
    assert 2 == len(b.find_elements(By.CSS_SELECTOR, "svg .point"))  # type: ignore[attr-defined]
    b.save_screenshot(str(tmp_path / "patient-ben.png"))  # type: ignore[attr-defined]

    # the pharmacist: sees the patient and the dispense answer, no event form, no message browser
    _login(b, d, pharmacist)
    b.get(base + "/ui/patients/GP1?authority=HOSP")  # type: ignore[attr-defined]
    assert "Do not dispense" in b.find_element(By.ID, "dispense").text  # type: ignore[attr-defined]
    assert not b.find_elements(By.ID, "event-form")  # type: ignore[attr-defined]
    assert not b.find_elements(By.LINK_TEXT, "Messages")  # type: ignore[attr-defined]
    b.get(base + "/ui/messages")  # type: ignore[attr-defined]
    assert "may not browse messages" in b.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]
    b.save_screenshot(str(tmp_path / "pharmacist.png"))  # type: ignore[attr-defined]
    # a pharmacist's session posting an event anyway (a valid CSRF token, a hand-made form) is refused
    b.execute_script(  # type: ignore[attr-defined]
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/ui/patients/GP1/events?authority=HOSP';"
        "for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['type', 'override'], ['on', arguments[0]], ['rationale', 'x']])"
        "{ const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); } document.body.appendChild(f); f.submit();",
        date.today().isoformat(),
    )
    _until(b, lambda drv: "may not record clinical events" in drv.find_element(By.TAG_NAME, "main").text)

    # the integration engineer: the message browser, not the patients
    _login(b, d, engineer)
    b.get(base + "/ui/messages?control_id=GP1-W1")  # type: ignore[attr-defined]
    assert "GP1-W1" in b.find_element(By.ID, "messages").text  # type: ignore[attr-defined]
    b.save_screenshot(str(tmp_path / "messages.png"))  # type: ignore[attr-defined]
    b.get(base + "/ui/feeds")  # type: ignore[attr-defined]
    feed = b.find_element(By.CSS_SELECTOR, "#feeds tr.feed")  # type: ignore[attr-defined]
    assert "sending" in feed.text and feed.find_element(By.TAG_NAME, "svg")
    b.save_screenshot(str(tmp_path / "feeds.png"))  # type: ignore[attr-defined]
    b.get(base + "/ui/patients/GP1?authority=HOSP")  # type: ignore[attr-defined]
    assert "may not read patients" in b.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]

    # the auditor lands on the access trail: the chain holds, and it shows who read GP1
    _login(b, d, auditor)
    assert "Access trail" in b.title  # type: ignore[attr-defined]
    assert "chain holds" in b.find_element(By.ID, "chain").text  # type: ignore[attr-defined]
    b.get(base + "/ui/audit?patient=GP1&authority=HOSP")  # type: ignore[attr-defined]
    trail = b.find_element(By.ID, "trail").text  # type: ignore[attr-defined]
    assert "DR-JONES" in trail and "Main St pharmacy" in trail and "ui.patient.event" in trail
    b.save_screenshot(str(tmp_path / "auditor.png"))  # type: ignore[attr-defined]


def test_a_stale_or_foreign_form_is_refused(daemon: DaemonProcess) -> None:
    """CSRF: a form posted without this session's token (another site's) changes nothing."""
    import urllib.error
    import urllib.request

    token = _token(daemon, "DR-CSRF", "prescriber", "clinic")
    req = urllib.request.Request(f"http://127.0.0.1:{daemon.http_port}/ui/patients/X/events?authority=HOSP", data=b"type=fever&on=2026-01-01&temperature_c=39&csrf=forged", method="POST", headers={"Cookie": f"rems_session={token}", "Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert 403 == refused.value.code


def test_clinic_enrolls_imports_and_reassigns_and_raw_hl7_is_for_integration_only(daemon: DaemonProcess, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    b: object = browser
    d = daemon
    base = f"http://127.0.0.1:{d.http_port}"
    clinic, engineer, pharmacist = _token(d, "clinic-lead", "clinic"), _token(d, "lab-interface", "integration"), _token(d, "Main St pharmacy", "pharmacy")
    _send(d, oru("NEW1-B", "NEW1", START - timedelta(days=1), "1.9", "NEW1-B"))

    # enroll from the form
    _login(b, d, clinic)
    b.find_element(By.CSS_SELECTOR, "details summary").click()  # type: ignore[attr-defined]
    b.find_element(By.ID, "e-id").send_keys("NEW1")  # type: ignore[attr-defined]
    b.find_element(By.ID, "e-authority").send_keys("HOSP")  # type: ignore[attr-defined]
    Select(b.find_element(By.ID, "e-population")).select_by_value("general")  # type: ignore[attr-defined]
    b.execute_script(f"document.getElementById('e-start').value = '{START.isoformat()}'")  # type: ignore[attr-defined]
    b.find_element(By.ID, "e-pharmacy").send_keys("RX1")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#enroll-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: "Patient NEW1" in drv.find_element(By.TAG_NAME, "h1").text)
    assert "NEW1 · rems-ingest" == b.title  # type: ignore[attr-defined]  # the clinic's forms stay out of the title
    assert "continue" in b.find_element(By.ID, "action").text  # type: ignore[attr-defined]

    # change the pharmacy
    field = b.find_element(By.ID, "pharmacy_id")  # type: ignore[attr-defined]
    field.clear()
    field.send_keys("RX2")
    b.find_element(By.CSS_SELECTOR, "#assign-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: "/ RX2" in drv.find_element(By.TAG_NAME, "main").text)

    # un-enrolling a patient still on therapy is refused, with the reason
    b.find_element(By.ID, "reason").send_keys("moved to another trust")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#unenroll-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: drv.find_elements(By.CSS_SELECTOR, "p.error"))
    assert "record the discontinuation first" in b.find_element(By.CSS_SELECTOR, "p.error").text  # type: ignore[attr-defined]

    # import a clinic: preview first (nothing changes), then apply
    csv_file = tmp_path / "clinic.csv"
    csv_file.write_text(f"id,authority,population,therapy_start,baseline_anc,monitoring_frequency,prescriber_id,pharmacy_id\nIMP1,HOSP,general,{START.isoformat()},,monthly,DR1,RX1\nNEW1,HOSP,general,{START.isoformat()},,,,RX9\n")
    b.get(base + "/ui/worklists")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "details summary").click()  # type: ignore[attr-defined]
    b.find_element(By.ID, "csv").send_keys(str(csv_file))  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#import-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: drv.find_elements(By.ID, "preview"))
    preview = b.find_element(By.ID, "preview").text  # type: ignore[attr-defined]
    assert "IMP1" in preview and "would enroll" in preview and "pharmacy_id RX9 here, RX2 stored" in preview
    b.save_screenshot(str(tmp_path / "import-preview.png"))  # type: ignore[attr-defined]
    assert 404 == d.http("GET", "/v1/patients/IMP1?authority=HOSP")[0]
    b.find_element(By.CSS_SELECTOR, "#apply-form button[type=submit]").click()  # type: ignore[attr-defined]
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(b, 15).until(lambda drv: drv.current_url.endswith("/ui/worklists"))
    assert 200 == d.http("GET", "/v1/patients/IMP1?authority=HOSP")[0]

    # raw HL7: the integration role reads it (audited); a pharmacist may not
    _login(b, d, engineer)
    b.get(base + f"/ui/messages?control_id=NEW1-B&since={date.today().isoformat()}")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#messages a").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: "MSH|" in drv.find_element(By.ID, "raw").text)
    assert "NEW1" in b.find_element(By.ID, "message-results").text  # type: ignore[attr-defined]  # what it changed
    # replay from the browser: a preview of what would be replayed, then the replay itself
    _send(d, oru("NEUTA-1", "NEW1", date.today(), "1.7", "NEUTA-1").replace(b"751-8^Neutrophils [#/volume] in Blood by Automated count^LN", b"NEUTA^Neutrophils abs^L"))
    b.get(base + "/ui/messages")  # type: ignore[attr-defined]
    Select(b.find_element(By.ID, "r-status")).select_by_value("FILTERED")  # type: ignore[attr-defined]
    b.execute_script(f"document.getElementById('r-since').value = '{date.today().isoformat()}'")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#replay-form button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: drv.find_elements(By.ID, "replay-preview"))
    assert "NEUTA-1" in b.find_element(By.ID, "replay-preview").text  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#replay-apply button[type=submit]").click()  # type: ignore[attr-defined]
    _until(b, lambda drv: drv.find_elements(By.ID, "replay-result"))
    assert "NEUTA-1" in b.find_element(By.ID, "replay-result").text  # type: ignore[attr-defined]
    trail = subprocess.run([str(BIN), "audit", "show"], env=d.env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "ui.message.raw" in trail and "lab-interface" in trail
    _login(b, d, pharmacist)
    b.get(base + "/ui/messages/1")  # type: ignore[attr-defined]
    assert "may not read raw messages" in b.find_element(By.TAG_NAME, "main").text  # type: ignore[attr-defined]
