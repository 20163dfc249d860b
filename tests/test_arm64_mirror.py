"""deploy/arm64/lib.sh takes its Debian mirror from the host's own apt sources (ARM64_MIRROR wins).

The emulated run (deploy/test-arm64.sh) takes minutes; these tests run only the parser, on apt
source files written here in both formats apt reads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "deploy" / "arm64" / "lib.sh"
LOCAL = "http://apt-cache.lan:3142/debian"  # what a site's own mirror or proxy looks like


def mirror(etc: Path, **env: str) -> str:
    """`$MIRROR` after sourcing lib.sh, with `etc` standing in for /etc/apt."""
    done = subprocess.run(
        ["bash", "-c", '. "$1"; [[ -n ${ARM64_MIRROR:-} ]] && echo "$MIRROR" || host_debian_mirror "$2"',
         "sh", str(LIB), str(etc)],
        capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deb822_sources_skip_security_disabled_and_third_party(tmp_path):
    write(tmp_path / "sources.list.d" / "debian.sources", f"""\
# comment: URIs: http://commented.example/debian
Types: deb
URIs: https://vendor.example/apt
Suites: cloud-sdk-bookworm
Components: main

Types: deb-src
URIs: http://sources-only.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: {LOCAL}/
Suites: bookworm bookworm-updates
Components: main contrib
""")
    assert mirror(tmp_path) == LOCAL


def test_one_line_list_with_options_and_files_in_apts_order(tmp_path):
    write(tmp_path / "sources.list", "# deb http://commented.example/debian bookworm main\n"
                                     "deb http://security.example/debian-security bookworm-security main\n")
    write(tmp_path / "sources.list.d" / "a-nodesource.list",
          "deb [signed-by=/k.gpg arch=amd64] https://node.example/node_20.x nodistro main\n")
    write(tmp_path / "sources.list.d" / "b-debian.list",
          f"deb [ signed-by=/usr/share/keyrings/debian-archive-keyring.gpg ] {LOCAL} trixie main\n")
    write(tmp_path / "sources.list.d" / "c-other.list", "deb http://later.example/debian bookworm main\n")
    write(tmp_path / "sources.list.d" / "0-ignored.list.disabled",
          "deb http://not-read.example/debian bookworm main\n")
    assert mirror(tmp_path) == LOCAL


def test_no_debian_archive_prints_nothing_and_arm64_mirror_overrides(tmp_path):
    write(tmp_path / "sources.list", "deb https://node.example/node_20.x nodistro main\n")
    assert mirror(tmp_path) == ""
    assert mirror(tmp_path / "missing") == ""
    assert mirror(tmp_path, ARM64_MIRROR="http://override.example/debian") == \
        "http://override.example/debian"


def test_this_hosts_sources_give_a_mirror():
    """CI's machine is Debian: its apt sources name the archive the emulated run will use."""
    if not Path("/etc/debian_version").exists():
        pytest.skip("not a Debian host")
    assert mirror(Path("/etc/apt")).startswith(("http://", "https://"))
