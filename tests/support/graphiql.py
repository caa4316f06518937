"""Opens GraphiQL on the admin listener in headless Chromium (tests/support/browser.py), types
QUERY into its editor, runs it, and prints one JSON object: the result pane's text, the query
as the editor holds it, every URL the browser requested, the page's response headers and the
console's messages.

Usage: graphiql.py PAGE_URL AUTHORIZATION QUERY EXPECTED
(EXPECTED: a text the result must contain; the script waits up to 20 s for it.)
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from browser import chromium, console, network_log  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

EDITOR_TEXT = "return arguments[0].CodeMirror.getValue();"


def main():
    page, authorization, query, expected = sys.argv[1:5]
    driver = chromium({"Authorization": authorization})
    report = {}
    try:
        driver.get(page)
        wait = WebDriverWait(driver, 20)
        editor = wait.until(
            expected_conditions.presence_of_element_located(
                (By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror")
            )
        )
        editor.click()
        ActionChains(driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys(
            Keys.DELETE
        ).perform()
        ActionChains(driver).send_keys(query).perform()
        report["editor"] = driver.execute_script(EDITOR_TEXT, editor)
        driver.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
        result = driver.find_element(By.CSS_SELECTOR, ".result-window .CodeMirror")
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = driver.execute_script(EDITOR_TEXT, result)
            if expected in text:
                break
            time.sleep(0.1)
        report["result"] = text
        report["title"] = driver.title
    finally:
        requests, responses = network_log(driver)
        report["requests"] = requests
        report["responses"] = responses
        report["console"] = console(driver)
        driver.quit()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
