"""Build step: copy the viewer JavaScript from ``node_modules`` (``npm ci`` with the repo's package.json)
into ``imagelib/tiling/static/vendor`` — ``python -m imagelib.tiling.vendor [REPO_ROOT]``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

STATIC = Path(__file__).parent / "static" / "vendor"
#: vendored file → its path inside node_modules
FILES = {
    "openseadragon.min.js": "openseadragon/build/openseadragon/openseadragon.min.js",
    "openseadragon.LICENSE.txt": "openseadragon/LICENSE.txt",
    "leaflet.js": "leaflet/dist/leaflet.js",
    "leaflet.css": "leaflet/dist/leaflet.css",
    "leaflet.LICENSE.txt": "leaflet/LICENSE",
}


def vendor(root: Path) -> list[Path]:
    """Copy :data:`FILES` from ``root/node_modules``; return the written paths."""
    STATIC.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in FILES.items():
        written.append(Path(shutil.copyfile(root / "node_modules" / source, STATIC / name)))
    return written


if __name__ == "__main__":
    for path in vendor(Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(path)
