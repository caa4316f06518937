"""Debian's Chromium, headless, driven by selenium, for the tests of web pages.

The browser is /usr/bin/chromium with /usr/bin/chromedriver given to selenium as its Service,
so nothing is downloaded. Its network to the outside is closed: every host name resolves to
nothing except 127.0.0.1, so a page that loads anything from elsewhere fails to, and
`requests` lists every URL the browser asked for (from the performance log) so that a test
can check that each went to the server under test.
"""

import json

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(extra_headers=None):
    """A headless Chromium reaching 127.0.0.1 only, logging its network requests.

    extra_headers: HTTP headers added to every request (e.g. Authorization)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Network.enable", {})
    if extra_headers:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": extra_headers})
    return driver


def _events(driver):
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        yield message["method"], message.get("params", {})


def network_log(driver):
    """What the browser did on the network since the last call: (requests, responses), where
    requests are the URLs asked for, and responses one object per response: its URL, the
    request's method, the status and the headers (names in lower case)."""
    requests, methods, responses = [], {}, []
    for method, params in _events(driver):
        if method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
            methods[params["requestId"]] = params["request"]["method"]
        elif method == "Network.responseReceived":
            response = params["response"]
            responses.append(
                {
                    "url": response["url"],
                    "method": methods.get(params["requestId"]),
                    "status": response["status"],
                    "headers": {k.lower(): v for k, v in response["headers"].items()},
                }
            )
    return requests, responses


def console(driver):
    """The browser console's messages since the last call (CSP violations show up here)."""
    return [entry["message"] for entry in driver.get_log("browser")]
