"""Write the build machine's pip configuration for an image build: DIR/pip.conf and DIR/pip-ca.crt.

    python3 scripts/images/pip_secrets.py DIR

pip inside a build reaches the package index the way pip on the build machine does. The
settings come from `pip config list` (its files and PIP_* variables; a variable wins over a
file, as in pip) and go into one pip.conf; the CA bundle it names (Debian's standard one
when none is named) is copied beside it, and pip.conf points at it as the build sees it,
/run/secrets/pip-ca.crt. The Dockerfiles mount both as build secrets ("pip.conf",
"pip-ca.crt"), so no layer keeps them. Local wheel directories (find-links) are left out:
they do not exist inside the build. Both files are readable by their owner only.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def pip_settings() -> dict[str, str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if section not in ("global", "install", ":env:") or not name:
            continue
        if section != ":env:" and name in settings:
            continue
        settings[name] = ast.literal_eval(value)
    return settings


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    settings = pip_settings()
    settings.pop("find-links", None)
    cert = Path(settings.pop("cert", None) or DEBIAN_CA_BUNDLE)
    bundle = out / "pip-ca.crt"
    if cert.is_file():
        shutil.copyfile(cert, bundle)
        settings["cert"] = "/run/secrets/pip-ca.crt"
    else:
        bundle.write_text("")
    conf = out / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    for path in (conf, bundle):
        os.chmod(path, 0o600)


if __name__ == "__main__":
    main()
