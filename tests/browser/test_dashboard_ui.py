"""The admin dashboard in headless Chromium on realistic review data: charts render, a screenshot is kept."""

from __future__ import annotations

from analytics import reviewdata
from web import factories


def test_dashboard_screenshot_on_realistic_reviews(browser, site, artifacts):
    reviewdata.build(site.engine, site.project["id"], n_items=120, seed=11)
    with site.engine.begin() as conn:
        factories.make_user(conn, username="chief", role="admin")
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    factories.browser_sign_in(page, site.url, "chief")
    page.goto(f"{site.url}/dashboard")
    page.wait_for_selector("#evidence svg")
    assert page.locator("#evidence svg").count() >= 4
    assert page.locator("#reviewer-table table tr").count() >= 3
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    page.close()
