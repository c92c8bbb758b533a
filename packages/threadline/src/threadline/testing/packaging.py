"""Which installed distribution provides a file: the integrations share the ``threadline`` import
package, so their tests check that each module comes from its own distribution."""

from __future__ import annotations

import json
from importlib.metadata import distribution
from pathlib import Path
from urllib.parse import unquote, urlparse


def provided_by(path: str | None, dist_name: str) -> bool:
    """True if the file at ``path`` is installed by distribution ``dist_name`` (as a wheel, or
    as an editable install whose source tree contains it)."""
    assert path is not None
    dist = distribution(dist_name)
    direct_url = dist.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        root = Path(unquote(urlparse(json.loads(direct_url)["url"]).path))
        return Path(path).resolve().is_relative_to(root.resolve())
    installed = {Path(str(dist.locate_file(f))).resolve() for f in dist.files or []}
    return Path(path).resolve() in installed
