"""The iframe size the docs recommend fits the status snippet: rendered in Chromium at that
size, the dot and the show text are whole and inside the frame, a long status message or
address ends in an ellipsis inside the frame instead of wrapping out of sight (the address
yields first), and nothing scrolls. The size is read from README.md, components/webstatus/README.md and the gateway's
own index page, which must agree.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from test_webstatus import browser_tools, embedding_page, registered, webstatus, webstatus_bin  # noqa: F401 (fixtures)
from xmpptest.component import REPO_ROOT
from xmpptest.webstatus import BROWSER_DIR

IFRAME = re.compile(r'<iframe src="[^"]*/status/TOKEN" width="(\d+)" height="(\d+)"')
LONG_STATUS = "In a meeting about the quarterly roadmap until half past three, then lunch 🍝 — call me later"


def documented_sizes(index_html: str) -> dict[str, tuple[int, int]]:
    sizes = {}
    for name, text in (("README.md", (REPO_ROOT / "README.md").read_text()),
                       ("components/webstatus/README.md",
                        (REPO_ROOT / "components" / "webstatus" / "README.md").read_text()),
                       ("index page", index_html.replace("&lt;", "<").replace("&gt;", ">"))):
        found = {(int(w), int(h)) for w, h in IFRAME.findall(text)}
        assert len(found) == 1, f"{name}: expected one iframe size, found {found}"
        sizes[name] = found.pop()
    return sizes


async def render(page_url: str, show: str, chromium: str) -> dict:
    proc = await asyncio.create_subprocess_exec(
        "node", str(BROWSER_DIR / "iframe_fit.mjs"), page_url, show, chromium,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(BROWSER_DIR))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return json.loads(out)


def assert_fits(report: dict, size: tuple[int, int]):
    width, height = size
    assert report["frame"] == {"width": width, "height": height}, report
    assert report["scroll"]["height"] <= height and report["scroll"]["width"] <= width, report
    for name in ("dot", "show", "status", "jid"):
        box = report[name]
        if box is None:
            continue
        assert box["top"] >= 0 and box["bottom"] <= height, (name, box, report["frame"])
        assert box["left"] >= 0 and box["right"] <= width, (name, box, report["frame"])
        if box["cut"]:
            assert name in ("status", "jid") and box["overflow"] == "ellipsis", (name, box)
    assert not report["show"]["cut"], report["show"]


@pytest.mark.parametrize("status", ["lunch", LONG_STATUS])
async def test_documented_iframe_size_shows_the_status_line_unclipped(server, webstatus, browser_tools,  # noqa: F811
                                                                      status):
    index = await webstatus.get("/")
    sizes = documented_sizes(index.body)
    assert len(set(sizes.values())) == 1, f"the docs disagree: {sizes}"
    size = sizes["README.md"]
    async with registered(server, webstatus, show_status_msg="1", show_full_jid="1") as (c, token):
        c.xmpp.send_presence(pshow="dnd", pstatus=status)
        await asyncio.sleep(0)   # the browser waits for the new show text itself
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Embed</title></head><body>"
                f"<p>Status:</p><iframe id='status' src='{webstatus.url(token)}' width='{size[0]}' "
                f"height='{size[1]}' style='border:0' title='XMPP status'></iframe></body></html>")
        with embedding_page(page) as page_url:
            report = await render(page_url, "Do not disturb", browser_tools)
    print(f"{size[0]}x{size[1]}: show {report['show']}, status {report['status']}, jid {report['jid']}")
    assert report["status"] is not None and report["jid"] is not None, report
    assert report["status"]["text"] == status
    assert_fits(report, size)
    if status == "lunch":   # a short status whole, the address in the room left
        assert not report["status"]["cut"] and report["jid"]["width"] >= 40, report
    else:   # a long one ends in an ellipsis; the address gives up its room first
        assert report["status"]["cut"] and report["status"]["width"] >= 80, report
