"""A real headless Chromium for tests of the HTML report: does the molecule move and show?"""

import re
import shutil
import subprocess

import numpy as np
import pytest


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# WebGL without a GPU: ANGLE on SwiftShader (software), which recent Chromium only allows when
# asked explicitly.  --no-sandbox because test machines often run as root.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--force-device-scale-factor=1",
                  "--hide-scrollbars", "--window-size=1200,2400"]


def run_chromium(args, timeout=40):
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, *args], check=False,
                          capture_output=True, text=True, timeout=timeout)


needs_chromium = pytest.mark.skipif(
    chromium() is None,
    reason="no chromium, chromium-browser or google-chrome binary on PATH for the headless-browser test")


def assert_movie_plays(report, expected_frames: int, scratch) -> None:
    """Open ``report`` in headless Chromium: the movie advances and the viewer is not blank.

    Parameters
    ----------
    report : pathlib.Path
        The HTML page.
    expected_frames : int
        Frames the movie should have.
    scratch : pathlib.Path
        A folder for the screenshot.
    """
    url = report.resolve().as_uri()

    # 1. the DOM after a (virtual) second: the player has drawn several frames.  Software WebGL
    # draws a frame in ~0.25 s of real time on two cores, so the budget is kept small.
    dom = run_chromium(["--virtual-time-budget=1000", "--dump-dom", url]).stdout
    shown = re.search(r'<body[^>]*data-frames-shown="(\d+)"', dom)
    assert shown, "the page did not start the movie: " + dom[:300]
    assert "data-viewer-error" not in dom, "the viewer reported an error"
    assert int(shown.group(1)) > 1, f"only {shown.group(1)} frame(s) drawn: the movie did not play"
    counter = re.search(r'id="frame-counter">frame (\d+) / (\d+)', dom)
    assert counter and int(counter.group(2)) == expected_frames
    rect = re.search(r'data-viewer-rect="(-?[\d.]+),(-?[\d.]+),([\d.]+),([\d.]+)"', dom)
    assert rect, "the page did not record where the viewer is"
    left, top, width, height = (float(v) for v in rect.groups())

    # 2. a screenshot: the viewer's rectangle shows a molecule, not a blank canvas
    shot = scratch / "shot.png"
    run_chromium([f"--screenshot={shot}", url])
    assert shot.exists(), "chromium wrote no screenshot"
    from matplotlib.image import imread

    pixels = imread(str(shot))[..., :3]
    inside = pixels[int(top) + 5:int(top + height) - 5, int(left) + 5:int(left + width) - 5]
    assert inside.size, "the viewer lies outside the screenshot"
    colours = np.unique((inside * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 20, "the viewer is blank"
    # non-white pixels (the molecule) cover a fair part of the viewer
    assert np.mean(inside.min(axis=-1) < 0.9) > 0.01
