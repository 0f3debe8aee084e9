"""The drift report's picture: the most drifted features, baseline (blue) against live (orange)
shares per bucket, one panel each, titled with the feature's name and its PSI.

A PNG written with the standard library (zlib) and a 3x5 pixel font: the Lambda has no matplotlib,
and one picture must come out the same from the Lambda and from `sagelab monitor`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Protocol

WIDTH, PANEL_HEIGHT, MARGIN, TITLE_HEIGHT, SCALE = 640, 120, 12, 16, 2
BACKGROUND, AXIS, TEXT = (255, 255, 255), (120, 120, 120), (20, 20, 20)
BASELINE_COLOUR, LIVE_COLOUR, DRIFTED_COLOUR = (66, 133, 244), (244, 160, 0), (200, 30, 30)

# 3x5 glyphs, rows top to bottom; anything else is drawn as a blank.
_GLYPHS = {
    "0": ("111", "101", "101", "101", "111"), "1": ("010", "110", "010", "010", "111"), "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"), "4": ("101", "101", "111", "001", "001"), "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"), "7": ("111", "001", "010", "010", "010"), "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"), "a": ("010", "101", "111", "101", "101"), "b": ("110", "101", "110", "101", "110"),
    "c": ("011", "100", "100", "100", "011"), "d": ("110", "101", "101", "101", "110"), "e": ("111", "100", "110", "100", "111"),
    "f": ("111", "100", "110", "100", "100"), "g": ("011", "100", "101", "101", "011"), "h": ("101", "101", "111", "101", "101"),
    "i": ("111", "010", "010", "010", "111"), "j": ("001", "001", "001", "101", "010"), "k": ("101", "101", "110", "101", "101"),
    "l": ("100", "100", "100", "100", "111"), "m": ("101", "111", "111", "101", "101"), "n": ("110", "101", "101", "101", "101"),
    "o": ("010", "101", "101", "101", "010"), "p": ("110", "101", "110", "100", "100"), "q": ("010", "101", "101", "110", "011"),
    "r": ("110", "101", "110", "101", "101"), "s": ("011", "100", "010", "001", "110"), "t": ("111", "010", "010", "010", "010"),
    "u": ("101", "101", "101", "101", "111"), "v": ("101", "101", "101", "101", "010"), "w": ("101", "101", "111", "111", "101"),
    "x": ("101", "101", "010", "101", "101"), "y": ("101", "101", "010", "010", "010"), "z": ("111", "001", "010", "100", "111"),
    ".": ("000", "000", "000", "000", "010"), "_": ("000", "000", "000", "000", "111"), "-": ("000", "000", "111", "000", "000"),
    ":": ("000", "010", "000", "010", "000"), "=": ("000", "111", "000", "111", "000"), ">": ("100", "010", "001", "010", "100"),
    "(": ("010", "100", "100", "100", "010"), ")": ("010", "001", "001", "001", "010"), "/": ("001", "001", "010", "100", "100"),
}  # fmt: skip


class Panel(Protocol):
    """What a panel shows (comparison.FeatureResult has these)."""

    name: str
    drift: float | None
    baseline_shares: list[float]
    live_shares: list[float]


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(BACKGROUND) * (width * height))

    def rectangle(self, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height, max(y0, y1))
        row = bytes(colour) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, colour: tuple[int, int, int] = TEXT) -> None:
        for character in text.lower():
            for dy, line in enumerate(_GLYPHS.get(character, ("000",) * 5)):
                for dx, bit in enumerate(line):
                    if bit == "1":
                        self.rectangle(x + dx * SCALE, y + dy * SCALE, x + (dx + 1) * SCALE, y + (dy + 1) * SCALE, colour)
            x += 4 * SCALE

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3]) for y in range(self.height))

        def chunk(chunk_type: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", zlib.crc32(chunk_type + data) & 0xFFFFFFFF)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def drift_png(panels: Sequence[Panel], threshold: float) -> bytes:
    """One panel per feature (at least one: an empty report draws a note)."""
    height = MARGIN + max(1, len(panels)) * (PANEL_HEIGHT + MARGIN)
    canvas = Canvas(WIDTH, height)
    if not panels:
        canvas.text(MARGIN, MARGIN, "no feature had enough values to judge")
        return canvas.png()
    for index, panel in enumerate(panels):
        top = MARGIN + index * (PANEL_HEIGHT + MARGIN)
        drifted = panel.drift is not None and panel.drift > threshold
        score = "n/a" if panel.drift is None else f"{panel.drift:.3f}"
        canvas.text(MARGIN, top, f"{panel.name[:48]}  psi {score}", DRIFTED_COLOUR if drifted else TEXT)
        _bars(canvas, panel, MARGIN, top + TITLE_HEIGHT, WIDTH - MARGIN, top + PANEL_HEIGHT)
    return canvas.png()


def _bars(canvas: Canvas, panel: Panel, left: int, top: int, right: int, bottom: int) -> None:
    canvas.rectangle(left, bottom - 1, right, bottom, AXIS)
    buckets = max(1, len(panel.baseline_shares))
    highest = max([*panel.baseline_shares, *panel.live_shares, 1e-9])
    slot = (right - left) / buckets
    for position, (base, live) in enumerate(zip(panel.baseline_shares, panel.live_shares, strict=True)):
        x = left + int(position * slot)
        bar = max(1, int(slot / 2) - 1)
        for offset, share, colour in ((0, base, BASELINE_COLOUR), (bar, live, LIVE_COLOUR)):
            height = int((bottom - 1 - top) * share / highest)
            canvas.rectangle(x + offset, bottom - 1 - height, x + offset + bar, bottom - 1, colour)
