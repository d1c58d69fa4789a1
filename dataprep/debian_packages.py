"""Find the Debian packages that scripts/install_corpora.sh unpacked.

Two built-in corpora (markup, code-adjacent) are cut from Debian's Python
documentation packages. The data preparation never fetches anything itself:
the project's install script downloads and unpacks them into
`<root>/debian/<package>/`, and this module only reads what is there, with the
package version and .deb sha256 that the script recorded, so that a corpus
manifest can say exactly which package release it was made from.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

INSTALL_SCRIPT = "scripts/install_corpora.sh"


class MissingPackageError(FileNotFoundError):
    """A corpus needs a Debian package that has not been unpacked yet."""


@dataclasses.dataclass(frozen=True)
class DebianPackage:
    """One unpacked package: `tree` is the root its files were extracted under."""

    name: str
    version: str
    deb_sha256: str
    tree: Path

    def provenance(self) -> dict[str, str]:
        return {"package": self.name, "version": self.version, "deb_sha256": self.deb_sha256}


def find_package(root_dir: str | Path, name: str) -> DebianPackage:
    """The unpacked package `name` under `<root_dir>/debian/`, or a clear error."""
    folder = Path(root_dir) / "debian" / name
    record = folder / "package.txt"
    if not record.is_file():
        raise MissingPackageError(
            f"Debian package {name!r} is not unpacked under {folder.parent}; "
            f"run `{INSTALL_SCRIPT} {Path(root_dir)}` first"
        )
    fields = {}
    for line in record.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return DebianPackage(
        name=name,
        version=fields.get("version", ""),
        deb_sha256=fields.get("sha256", ""),
        tree=folder / "tree",
    )
