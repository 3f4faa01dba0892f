"""What the Draw page's canvas fix relies on, in streamlit-drawable-canvas and Streamlit.

mnist_demo/ui/canvas.py adopts CANVAS_TOOLBAR_CSS into the canvas's shadow root: it moves the
component's toolbar, which 0.13.0 hides over the canvas's top-right strip (where it
swallowed strokes), into a row of its own above the canvas. The rules target the
component's private class names and undo its private layout, so an upgrade of either
package can make them miss silently. These checks fail first: after an upgrade, look at
the page in a browser (tests/e2e/test_canvas_e2e.py draws from every corner), adapt the
override or drop it if the component fixed its toolbar, then update the pins here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
from pathlib import Path

import pytest
import streamlit

ROOT = Path(__file__).resolve().parents[1]
CANVAS_WIDGET = ROOT / "mnist_demo" / "ui" / "canvas.py"
# Found, not imported: importing it registers a component, which needs a running app.
PACKAGE = Path(importlib.util.find_spec("streamlit_drawable_canvas").origin).parent
BUILD = PACKAGE / "frontend" / "build"
PINNED = "0.13.0"


def pins() -> dict[str, str]:
    found = re.findall(r"^([\w-]+)==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    return dict(found)


def only(pattern: str) -> Path:
    (path,) = BUILD.glob(pattern)  # the component loads exactly these (js/css globs)
    return path


@pytest.fixture(scope="module")
def build_css() -> dict[str, dict[str, str]]:
    """The component's stylesheet as {selector: {property: value}} (flat, minified)."""
    rules = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", only("index-*.css").read_text()):
        declarations = dict(d.split(":", 1) for d in body.split(";") if ":" in d)
        for selector in selectors.split(","):
            rules[selector.strip()] = {k.strip(): v.strip() for k, v in declarations.items()}
    return rules


@pytest.fixture(scope="module")
def build_js() -> str:
    return only("index-*.js").read_text()


def override_css() -> str:
    """CANVAS_TOOLBAR_CSS from the canvas widget, read without running a page."""
    tree = ast.parse(CANVAS_WIDGET.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CANVAS_TOOLBAR_CSS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{CANVAS_WIDGET} has no CANVAS_TOOLBAR_CSS")


def test_the_pinned_canvas_version_is_the_one_installed():
    assert pins()["streamlit-drawable-canvas"] == PINNED, "requirements.txt moved the pin"
    assert importlib.metadata.version("streamlit-drawable-canvas") == PINNED


def test_the_toolbar_still_hides_over_the_canvas_as_the_fix_assumes(build_css):
    """The layout the override undoes. If these fail, the toolbar moved: check whether
    it still covers the canvas before touching the override."""
    toolbar = build_css[".dc-toolbar"]
    assert toolbar["position"] == "absolute" and toolbar["top"] == "-1rem"
    assert toolbar["right"] == "0" and toolbar["opacity"] == "0"
    canvas = build_css[".dc-canvas"]
    assert int(toolbar["z-index"]) > int(canvas["z-index"])  # on top of the drawing layer
    assert build_css[".dc-root"]["position"] == "relative"  # what the toolbar sits in
    # shown, and lifted above the canvas, only on hover: never on a touch screen
    assert build_css[".dc-root:hover>.dc-toolbar"]["top"] == "-2.65rem"
    assert build_css[".dc-toolbar[data-pinned=true]"]["opacity"] == "1"


def test_the_toolbar_is_built_inside_dc_root_with_its_buttons(build_js):
    """The override lays out .dc-root's children (canvas box, then toolbar) as a column
    with the toolbar first; the e2e tests press these buttons by name."""
    for name in ("dc-root", "dc-scroll", "dc-toolbar", "dc-toolbar-card", "dc-icon-button"):
        assert f'className = "{name}"' in build_js, name
    root = re.search(r'(\w+)\.className = "dc-root"', build_js).group(1)
    scroll = re.search(r'(\w+)\.className = "dc-scroll"', build_js).group(1)
    toolbar = re.search(r'(\w+)\.className = "dc-toolbar"', build_js).group(1)
    assert re.search(rf"\b{root}\.append\({scroll}, {toolbar}\b", build_js), (
        "the toolbar is no longer .dc-root's child right after the canvas box"
    )
    # the e2e tests press Undo and Redo; the override hides the others by these titles
    titles = ("Undo", "Redo", "Edit", "Reset canvas & history", "Update the app with this drawing")
    for title in titles:
        assert f'"{title}"' in build_js, title


def test_every_class_the_override_names_exists_in_the_component(build_css, build_js):
    css = override_css()
    names = set(re.findall(r"\.([a-z][\w-]*)", css))
    assert {"dc-root", "dc-toolbar", "dc-icon-button"} <= names
    for name in names:
        assert any(name in re.findall(r"\.([a-z][\w-]*)", s) for s in build_css), name
        assert f'"{name}"' in build_js, name


def test_the_canvas_renders_in_an_open_shadow_root_where_the_page_adopts_the_rules():
    """A page <style> can't reach into the component's shadow root, so the page finds
    the hosts Streamlit makes for isolated components and adopts a stylesheet into
    their open shadow roots."""
    source = (PACKAGE / "__init__.py").read_text()
    assert re.search(r"isolate_styles=True", source), "the canvas is no longer isolated"
    assert pins()["streamlit"] == streamlit.__version__
    static = Path(streamlit.__file__).parent / "static" / "static" / "js"
    (bidi,) = static.glob("BidiComponent.*.js")
    frontend = bidi.read_text()
    assert "stBidiComponentIsolated" in frontend
    assert "attachShadow({mode:`open`})" in frontend
    widget = CANVAS_WIDGET.read_text()
    assert '[data-testid="stBidiComponentIsolated"]' in widget
