"""Drives the web console in Debian's Chromium (headless, through chromedriver) and reports
what the page showed as one JSON document on stdout; `tests/console_e2e.rs` starts the
instance, runs this script and checks the report against the API and the XMPP client.

Usage: console_browser.py CONFIG_JSON, where the config names the console's URL, the
accounts, the domains, the sender, the recipients expected and the screenshot directory.

Nothing is downloaded: selenium is given /usr/bin/chromedriver as its Service and
/usr/bin/chromium as the browser. Every wait polls the page for the awaited state with a
deadline; a step that does not come about raises, and the report says where.
"""

import json
import os
import sys
import tempfile
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30
DESKTOP = (1100, 1000)
PHONE = (390, 844)


class Console:
    def __init__(self, config):
        self.config = config
        self.base = config["url"].rstrip("/")
        self.shots = config["screenshots"]
        os.makedirs(self.shots, exist_ok=True)
        self.shot_count = 0
        self.requests = []
        self.responses = {}
        self.console_errors = []
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        self.profile = tempfile.TemporaryDirectory(prefix="xb-chromium-")
        for flag in [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            f"--user-data-dir={self.profile.name}",
            f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        ]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_window_size(*DESKTOP)

    # ---- plumbing ----------------------------------------------------------------------------

    def collect_logs(self):
        """Drains the performance and console logs into the report's lists."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent":
                self.requests.append(params["request"]["url"])
            elif message.get("method") == "Network.responseReceived":
                response = params["response"]
                headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
                self.responses[response["url"]] = {
                    "status": response["status"],
                    "csp": headers.get("content-security-policy"),
                }
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE" and "/api/graphql" not in entry.get("message", ""):
                # A failed API call (401, 400) is logged by Chromium as a resource error; those
                # are expected in the refusal steps. Anything else (a CSP violation, a script
                # error) is reported.
                self.console_errors.append(entry["message"])

    def shot(self, name):
        self.shot_count += 1
        path = os.path.join(self.shots, f"{self.shot_count:02d}-{name}.png")
        self.driver.save_screenshot(path)
        return path

    def wait(self, predicate, what, timeout=WAIT):
        def check(_):
            try:
                return predicate()
            except StaleElementReferenceException:
                return False

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(check)
        except Exception as err:
            raise AssertionError(f"timed out waiting for {what}") from err

    def by_id(self, element_id):
        return self.driver.find_element(By.ID, element_id)

    def visible(self, element_id):
        return self.by_id(element_id).is_displayed()

    def text(self, element_id):
        return self.by_id(element_id).text

    def type_into(self, element_id, text):
        field = self.by_id(element_id)
        field.clear()
        field.send_keys(text)

    def paste_into(self, element_id, text):
        """Sets a long value at once and fires `input`, as a paste does (typing 16,000
        characters key by key takes a minute)."""
        self.driver.execute_script(
            "const f = document.getElementById(arguments[0]); f.value = arguments[1];"
            "f.dispatchEvent(new Event('input', {bubbles: true}));",
            element_id,
            text,
        )

    def focused_id(self):
        return self.driver.execute_script("return document.activeElement && document.activeElement.id")

    # ---- steps -------------------------------------------------------------------------------

    def login(self, user, password):
        self.wait(lambda: self.visible("login-view"), "the login form")
        self.type_into("username", user)
        self.type_into("password", password)
        self.by_id("login-submit").click()

    def logout(self):
        self.by_id("logout").click()
        self.wait(lambda: self.visible("login-view"), "the login form after logging out")

    def domains(self):
        return [o.get_attribute("value") for o in Select(self.by_id("domain")).options]

    def jobs(self):
        """`(id, state)` of the listed jobs, read in one go (the list is redrawn as it polls)."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#jobs > li.job'),"
            " c => [Number(c.dataset.jobId), c.dataset.state])")

    def fill(self, name, subject, body, sender, rate):
        self.by_id("edit").click() if self.visible("edit") else None
        self.type_into("f-name", name)
        self.type_into("f-subject", subject)
        if len(body) > 200:
            self.paste_into("f-body", body)
        else:
            self.type_into("f-body", body)
        self.type_into("f-sender", sender)
        self.type_into("f-rate", rate)

    def dry_run(self):
        self.by_id("check").click()
        self.wait(lambda: self.visible("dry-run") and self.visible("confirm"), "the dry run")
        return {
            "text": self.text("dry-run-text"),
            "sample": [li.text for li in self.driver.find_elements(By.CSS_SELECTOR, "#dry-run-sample li")],
            "confirm": self.text("confirm"),
            "focused": self.focused_id(),
        }

    def refused(self, case, field, **values):
        """Fills the form with one bad value, confirms, and reads the error at its field."""
        self.fill(**values)
        counter = self.text(f"{field}-count") if field in ("f-body", "f-name", "f-subject") else None
        self.dry_run()
        self.by_id("confirm").click()
        error_id = f"{field}-error"
        self.wait(lambda: self.text(error_id) != "", f"the error at {field} ({case})")
        result = {
            "case": case,
            "error": self.text(error_id),
            "invalid": self.by_id(field).get_attribute("aria-invalid"),
            "focused": self.focused_id(),
            "counter": counter,
            "other_errors": self.text("send-error"),
            "jobs": self.jobs(),
            "screenshot": self.shot(f"refused-{case.replace(' ', '-')}"),
        }
        return result

    def send(self, name, subject, body, sender, rate, start_at=None):
        self.fill(name, subject, body, sender, rate)
        if start_at:
            self.paste_into("f-start-at", start_at)
        dry = self.dry_run()
        dry["screenshot"] = self.shot(f"dry-run-{name}")
        before = self.by_id("followed").get_attribute("data-job-id")
        self.by_id("confirm").click()

        def followed():
            shown = self.by_id("followed").get_attribute("data-job-id")
            return self.visible("followed") and shown and shown != before and shown

        job_id = int(self.wait(followed, f"the progress of {name}"))
        return dry, job_id

    def act_on(self, job_id, action, before_confirm=None):
        """Clicks `action` on the job's card and confirms in the dialog (after
        `before_confirm(dialog report)`, which may fill the dialog's fields)."""
        self.click_action(job_id, action)
        self.wait(lambda: self.visible("confirm-dialog"), f"the {action} dialog")
        dialog = {
            "title": self.text("confirm-title"),
            "text": self.text("confirm-text"),
            "focused": self.focused_id(),
            "confirm": self.text("confirm-yes"),
            "screenshot": self.shot(f"{action}-dialog"),
        }
        if before_confirm:
            before_confirm(dialog)
        self.by_id("confirm-yes").click()
        self.wait(lambda: not self.visible("confirm-dialog"), f"the {action} dialog to close")
        return dialog

    def click_action(self, job_id, action):
        """Clicks the `action` button of the job's card."""
        selector = f'#jobs button[data-action="{action}"][data-id="{job_id}"]'

        def click():
            buttons = self.driver.find_elements(By.CSS_SELECTOR, selector)
            if buttons:
                buttons[0].click()  # a button redrawn meanwhile is stale: tried again
                return True
            return False

        self.wait(click, f"the {action} button of job {job_id}")

    def api(self, query, variables):
        """The admin API's `data` for `query`, asked from the page's origin with the global
        admin's credentials: what the server holds, for the report (not through the console)."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/api/graphql', {method: 'POST', credentials: 'omit', headers: {"
            " 'content-type': 'application/json', authorization: 'Basic ' + btoa(arguments[2])},"
            " body: JSON.stringify({query: arguments[0], variables: arguments[1]})})"
            ".then(r => r.json()).then(b => done(b.data), e => done(String(e)));",
            query, variables, f"{self.config['admin_user']}:{self.config['admin_password']}")

    def card_state(self, job_id):
        return dict(self.jobs()).get(job_id)


def run(config, report):
    console = Console(config)
    driver = console.driver
    try:
        driver.get(console.base + "/")
        report["title"] = driver.title
        report["login_focused"] = console.focused_id()
        report["screenshots"] = [console.shot("login")]

        # Wrong credentials are refused with the API's words.
        console.login(config["admin_user"], "not-the-password")
        console.wait(lambda: console.text("login-error") != "", "the login error")
        report["wrong_credentials"] = {
            "error": console.text("login-error"),
            "still_login": console.visible("login-view"),
            "screenshot": console.shot("wrong-credentials"),
        }

        # A domain admin sees its domain only.
        console.login(config["domain_admin_user"], config["domain_admin_password"])
        console.wait(lambda: console.visible("app-view"), "the console after the domain admin's login")
        report["domain_admin"] = {
            "domains": console.domains(),
            "picker_disabled": not console.by_id("domain").is_enabled(),
            "who": console.text("who"),
            "screenshot": console.shot("domain-admin"),
        }
        console.logout()
        report["after_logout"] = {
            "login_visible": console.visible("login-view"),
            "app_hidden": not console.visible("app-view"),
            "focused": console.focused_id(),
        }

        # The global admin picks among every domain.
        console.login(config["admin_user"], config["admin_password"])
        console.wait(lambda: console.visible("app-view"), "the console after the global admin's login")
        report["global_admin"] = {
            "domains": console.domains(),
            "focused": console.focused_id(),
            # Form controls without a label a screen reader would read.
            "unlabelled": driver.execute_script(
                "return Array.from(document.querySelectorAll('input, select, textarea'))"
                ".filter(c => c.labels.length === 0).map(c => c.id)"),
        }
        # Another domain's jobs, a page at a time.
        Select(console.by_id("domain")).select_by_value(config["other_domain"])
        console.wait(lambda: console.text("page") == "Jobs 1–10", "the other domain's first page")
        pages = {"labels": [], "older_disabled": [], "newer_disabled": []}

        def page(key):
            pages[key] = console.jobs()
            pages["labels"].append(console.text("page"))
            pages["older_disabled"].append(not console.by_id("older").is_enabled())
            pages["newer_disabled"].append(not console.by_id("newer").is_enabled())

        page("first")
        console.by_id("older").click()
        console.wait(lambda: console.text("page") == "Jobs 11–12", "the second page")
        page("second")
        pages["screenshot"] = console.shot("second-page")
        console.by_id("newer").click()
        console.wait(lambda: console.text("page") == "Jobs 1–10", "the first page again")
        page("back")
        report["pages"] = pages
        Select(console.by_id("domain")).select_by_value(config["domain"])
        console.wait(lambda: console.text("page") == "" and console.visible("jobs-empty"), "the empty jobs list")

        # Bad input: the API's error at its field, and no job.
        good = dict(name="notice", subject="Maintenance", body="Down at 22:00 UTC.",
                    sender=config["sender"], rate="100")
        over = "x" * (config["body_max"] + 1)
        report["refusals"] = [
            console.refused("empty body", "f-body", **{**good, "body": ""}),
            console.refused("body over the limit", "f-body", **{**good, "body": over}),
            console.refused("rate 0", "f-rate", **{**good, "rate": "0"}),
            console.refused("unknown sender", "f-sender", **{**good, "sender": config["unknown_sender"]}),
        ]

        # The announcement: dry run, confirmation, progress to 100 % and FINISHED.
        dry, job_id = console.send(config["name"], config["subject"], config["body"], config["sender"], "100")
        console.wait(lambda: console.by_id("followed").get_attribute("data-state") == "FINISHED",
                     "the job to finish", timeout=120)
        bar = console.by_id("followed-bar")
        report["sent"] = {
            "dry_run": dry,
            "job_id": job_id,
            "state": console.by_id("followed").get_attribute("data-state"),
            "bar": [float(bar.get_attribute("value")), float(bar.get_attribute("max"))],
            "status": console.text("followed-status"),
            "status_role": console.by_id("followed-status").get_attribute("role"),
            "title": console.text("followed-title"),
        }
        console.wait(lambda: console.card_state(job_id) == "FINISHED", "the finished job in the list")
        report["sent"]["screenshot"] = console.shot("finished")
        # The README's picture: the whole page, from the top.
        driver.set_window_size(900, 1500)
        driver.execute_script("window.scrollTo(0, 0)")
        report["sent"]["readme_shot"] = console.shot("readme")
        driver.set_window_size(*DESKTOP)

        # A correction: the dialog refuses an empty text at its field, then sends the new one;
        # then a retraction. Each is followed to its end.
        def correct(dialog):
            console.by_id("a-body").clear()
            console.by_id("confirm-yes").click()
            console.wait(lambda: console.text("a-body-error") != "", "the correction's refusal")
            dialog["refused"] = {"error": console.text("a-body-error"),
                                 "focused": console.focused_id(),
                                 "screenshot": console.shot("correction-refused")}
            console.type_into("a-body", config["correction"])

        report["corrected"] = console.act_on(job_id, "correct", correct)
        correction_id = int(console.wait(
            lambda: (lambda shown: shown != str(job_id) and shown)(
                console.by_id("followed").get_attribute("data-job-id")),
            "the correction followed"))
        console.wait(lambda: console.card_state(correction_id) == "FINISHED", "the correction to finish", timeout=120)
        report["corrected"]["job_id"] = correction_id
        report["corrected"]["jobs"] = console.jobs()
        report["retracted"] = console.act_on(correction_id, "retract")
        retraction_id = int(console.wait(
            lambda: (lambda shown: shown != str(correction_id) and shown)(
                console.by_id("followed").get_attribute("data-job-id")),
            "the retraction followed"))
        console.wait(lambda: console.card_state(retraction_id) == "FINISHED", "the retraction to finish", timeout=120)
        report["retracted"]["job_id"] = retraction_id
        report["retracted"]["screenshot_done"] = console.shot("retracted")

        # On a phone-sized screen: one column, nothing wider than the screen.
        driver.set_window_size(*PHONE)
        console.wait(lambda: driver.execute_script("return window.innerWidth") <= PHONE[0], "the phone-sized window")
        report["phone"] = {
            "overflow": driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"),
            "screenshot": console.shot("phone"),
        }
        driver.set_window_size(*DESKTOP)

        # A slow job scheduled a few seconds ahead (in the browser's local time), seen
        # SCHEDULED, then RUNNING at its time, paused and resumed; aborted from the page, then
        # deleted.
        start_at = time.strftime("%Y-%m-%dT%H:%M:%S",
                                 time.localtime(time.time() + config["schedule_ahead"]))
        scheduled_dry, slow_id = console.send("slow", "", "A slow one.", config["sender"], "1", start_at)
        seen = []

        def reached(state):
            console.wait(lambda: console.card_state(slow_id) == state, f"the slow job {state}", timeout=60)
            seen.append(state)

        reached("SCHEDULED")
        scheduled_status = console.text("followed-status")
        scheduled_shot = console.shot("scheduled")
        reached("RUNNING")
        console.click_action(slow_id, "pause")
        reached("PAUSED")
        paused_status = console.text("followed-status")
        paused_shot = console.shot("paused")
        console.click_action(slow_id, "resume")
        reached("RUNNING")
        report["holds"] = {
            "dry_run": scheduled_dry,
            "start_at_local": start_at,
            "seen": seen,
            "scheduled_status": scheduled_status,
            "paused_status": paused_status,
            "screenshots": [scheduled_shot, paused_shot],
        }
        running_status = console.text("followed-status")
        abort = console.act_on(slow_id, "abort")
        console.wait(lambda: console.card_state(slow_id) == "ABORT_ADMIN", "the aborted job in the list")
        report["aborted"] = {
            "job_id": slow_id,
            "running_status": running_status,
            "dialog": abort,
            "state": console.card_state(slow_id),
            "screenshot": console.shot("aborted"),
        }
        report["aborted"]["stored"] = console.api(
            "query Slow($domain: DomainName!, $id: Int!) { broadcast { getBroadcast(domain: $domain,"
            " id: $id) { status startAt startTimestamp } } }",
            {"domain": config["domain"], "id": slow_id})["broadcast"]["getBroadcast"]
        delete = console.act_on(slow_id, "delete")
        console.wait(lambda: console.card_state(slow_id) is None, "the deleted job gone from the list")
        report["deleted"] = {"job_id": slow_id, "dialog": delete, "jobs": console.jobs(),
                             "screenshot": console.shot("deleted")}

        # Audiences: the group picker holds the domain's groups; a list with an address that is
        # not an account (shown in the dry run and on the job), a group, and a bad list line.
        groups = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#f-group option")]
        console.by_id("f-audience-listed").click()
        console.wait(lambda: console.visible("f-recipients"), "the list field")
        console.type_into("f-recipients", "\n".join(config["listed"]))
        listed_dry, listed_id = console.send("listed", "", "For two of you.", config["sender"], "100")
        console.wait(lambda: console.card_state(listed_id) == "FINISHED", "the listed job FINISHED")
        card = lambda job: driver.find_element(By.CSS_SELECTOR, f'#jobs li[data-job-id="{job}"]').text
        listed_facts = card(listed_id)
        listed_shot = console.shot("listed")
        console.by_id("f-audience-group").click()
        console.wait(lambda: console.visible("f-group"), "the group picker")
        group_dry, group_id = console.send("grouped", "", "For the group.", config["sender"], "100")
        console.wait(lambda: console.card_state(group_id) == "FINISHED", "the group job FINISHED")
        group_facts = card(group_id)
        console.by_id("f-audience-listed").click()
        console.type_into("f-recipients", "not an address")
        console.fill("bad", "", "b", config["sender"], "100")
        console.by_id("check").click()
        console.wait(lambda: console.text("f-recipients-error") != "", "the error at the list")
        bad_list = {"error": console.text("f-recipients-error"),
                    "invalid": console.by_id("f-recipients").get_attribute("aria-invalid"),
                    "screenshot": console.shot("refused-bad-list")}
        console.by_id("f-audience-all").click()
        report["audiences"] = {
            "groups": groups, "listed_id": listed_id, "listed_dry": listed_dry, "listed_facts": listed_facts,
            "group_id": group_id, "group_dry": group_dry, "group_facts": group_facts, "bad_list": bad_list,
            "screenshots": [listed_shot],
        }

        console.logout()
        console.collect_logs()
        report["requests"] = console.requests
        report["document"] = console.responses.get(console.base + "/")
        report["console_errors"] = console.console_errors
        report["ok"] = True
    except Exception:  # the report says where it stopped
        report["error"] = traceback.format_exc()
        try:
            report["failure_screenshot"] = console.shot("failure")
            report["failure_page"] = {
                "jobs": driver.execute_script("return document.getElementById('jobs').outerHTML"),
                "jobs_error": console.text("jobs-error"),
                "send_error": console.text("send-error"),
            }
            console.collect_logs()
            report["console_errors"] = console.console_errors
        except Exception:
            pass
    finally:
        driver.quit()
        console.profile.cleanup()


def main():
    config = json.loads(sys.argv[1])
    report = {"ok": False}
    started = time.monotonic()
    run(config, report)
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
