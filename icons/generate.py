#!/usr/bin/env python3
"""Draws the Switchboard icon and writes every size Tauri's bundler needs.

Run once after changing the design (needs Pillow: `pip install pillow`); the outputs are
committed, so builds never need Python. Sizes follow what `tauri icon` produces: PNGs for
Linux, ICO for Windows (plus the Store logos), ICNS for macOS.
"""
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
S = 1024


def master() -> Image.Image:
    img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    # Vertical gradient rounded square.
    grad = Image.new("RGBA", (S, S))
    top, bottom = (37, 99, 235), (30, 58, 138)
    for y in range(S):
        t = y / (S - 1)
        c = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom))
        ImageDraw.Draw(grad).line([(0, y), (S, y)], fill=c + (255,))
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).rounded_rectangle([40, 40, S - 40, S - 40], radius=220, fill=255)
    img.paste(grad, (0, 0), mask)
    d = ImageDraw.Draw(img)
    # A switchboard: three jacks on the left patched to two on the right.
    white = (255, 255, 255, 255)
    left = [(300, 300), (300, 512), (300, 724)]
    right = [(724, 400), (724, 624)]
    for a, b in [(left[0], right[1]), (left[1], right[0]), (left[2], right[1])]:
        d.line([a, b], fill=(191, 219, 254, 255), width=44)
    for x, y in left + right:
        d.ellipse([x - 78, y - 78, x + 78, y + 78], fill=white)
        d.ellipse([x - 30, y - 30, x + 30, y + 30], fill=(30, 64, 175, 255))
    return img


def main() -> None:
    m = master()
    png = {
        "32x32.png": 32, "64x64.png": 64, "128x128.png": 128, "128x128@2x.png": 256,
        "icon.png": 512, "Square30x30Logo.png": 30, "Square44x44Logo.png": 44,
        "Square71x71Logo.png": 71, "Square89x89Logo.png": 89, "Square107x107Logo.png": 107,
        "Square142x142Logo.png": 142, "Square150x150Logo.png": 150,
        "Square284x284Logo.png": 284, "Square310x310Logo.png": 310, "StoreLogo.png": 50,
    }
    for name, size in png.items():
        m.resize((size, size), Image.LANCZOS).save(HERE / name)
    m.save(HERE / "icon.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (256, 256)])
    m.save(HERE / "icon.icns")


if __name__ == "__main__":
    main()
