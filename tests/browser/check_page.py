"""Loads an auscult report from disk in headless Chromium (through ChromeDriver) and says what
a person would see: the browser's console messages, the fleet table's rows after sorting by a
column and after filtering, and a screenshot.

Usage: check_page.py CHROMIUM CHROMEDRIVER PAGE SCREENSHOT [SORT_COLUMN FILTER_WORD]
Prints one JSON object.
"""

import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

chromium, chromedriver, page, screenshot = sys.argv[1:5]
sort_column, filter_word = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else (None, None)

options = webdriver.ChromeOptions()
options.binary_location = chromium
for flag in [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1100,1500", "--user-data-dir=" + tempfile.mkdtemp(prefix="auscult-chromium-"),
]:
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(chromedriver), options=options)
try:
    driver.get("file://" + page)
    result = {"title": driver.title, "svgs": len(driver.find_elements(By.TAG_NAME, "svg"))}
    driver.save_screenshot(screenshot)

    def fleet_rows():
        rows = driver.find_elements(By.CSS_SELECTOR, "#fleet-table tbody tr")
        return [row.find_element(By.TAG_NAME, "td").text for row in rows if row.is_displayed()]

    if sort_column is not None:
        header = [th for th in driver.find_elements(By.CSS_SELECTOR, "#fleet-table th") if th.text.strip() == sort_column][0]
        header.click()
        result["ascending"] = fleet_rows()
        header.click()
        result["descending"] = fleet_rows()
        result["aria_sort"] = header.get_attribute("aria-sort")
        box = driver.find_element(By.ID, "filter")
        box.send_keys(filter_word)
        result["filtered"] = fleet_rows()
    # Read last: every message of the whole visit, load and clicks alike.
    result["console"] = driver.get_log("browser")
    print(json.dumps(result))
finally:
    driver.quit()
