"""The shipped systemd units give the warm runner and the worker the host's /tmp.

The worker (calmops@worker) runs each flow run in a temporary folder under /tmp and hands that folder to the warm
runner (calmops@runner, another unit), which runs the flow there; ``calmops run`` typed in a shell hands its folder
over too. A unit with a /tmp of its own (PrivateTmp=, or a setting that implies or replaces it) made every flow run
exit 1. systemd does not run on this machine: the unit files are read, as systemd would combine them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
FALSE = {"", "0", "no", "false", "off"}
# settings that give a unit a /tmp other than the host's (DynamicUser= implies PrivateTmp=)
BOOLEAN = ("PrivateTmp", "DynamicUser")
PATHS = ("TemporaryFileSystem", "InaccessiblePaths", "RootDirectory", "RootImage")


def service_settings(text: str, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The [Service] settings of a unit file (or drop-in) laid over ``settings``: the last assignment wins,
    an empty one resets a list (as systemd reads them; continuation lines joined)."""
    settings = dict(settings or {})
    section = None
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if key in PATHS and value and settings.get(key):
                value = f"{settings[key]} {value}"
            settings[key] = value
    return settings


def instance_settings(instance: str) -> dict[str, str]:
    """The [Service] settings of ``calmops@<instance>.service`` from the shipped files: its own unit file if one
    is shipped, else the template, then the drop-ins of both."""
    own = UNITS / f"calmops@{instance}.service"
    settings = service_settings((own if own.is_file() else UNITS / "calmops@.service").read_text())
    dropins = [*UNITS.glob("calmops@.service.d/*.conf"), *UNITS.glob(f"calmops@{instance}.service.d/*.conf")]
    for dropin in sorted(dropins, key=lambda path: path.name):
        settings = service_settings(dropin.read_text(), settings)
    return settings


def own_tmp(settings: dict[str, str]) -> list[str]:
    """The settings that give the unit a /tmp of its own."""
    def hides_tmp(key: str, value: str) -> bool:
        if key.startswith("Root"):  # another root: another /tmp
            return bool(value)
        paths = [path.lstrip("-+").split(":")[0].rstrip("/") for path in value.split()]
        return any(path in ("/tmp", "") for path in paths)  # /tmp itself, or / (all of it)

    found = [f"{key}={settings[key]}" for key in BOOLEAN if settings.get(key, "").lower() not in FALSE]
    return found + [f"{key}={settings[key]}" for key in PATHS if hides_tmp(key, settings.get(key, ""))]


@pytest.mark.parametrize("instance", ["runner", "worker"])
def test_the_runner_and_the_worker_units_see_the_hosts_tmp(instance):
    assert (UNITS / "calmops@.service").is_file()
    assert own_tmp(instance_settings(instance)) == [], (
        f"calmops@{instance} gets a /tmp of its own: the worker's flow-run folders under /tmp must be the ones the "
        "warm runner enters (docs/production.md, systemd)")


def test_the_rule_catches_a_private_tmp():
    """The check above is not vacuous: the settings that broke every flow run are found."""
    unit = "[Unit]\nDescription=CalmOps %i\n\n[Service]\nExecStart=/opt/calmops/.venv/bin/calmops service %i\n"
    assert own_tmp(service_settings(unit + "\n[Service]\nPrivateTmp=true\n")) == ["PrivateTmp=true"]
    assert own_tmp(service_settings(unit + "\n[Service]\nPrivateTmp=yes\nPrivateTmp=no\n")) == []
    assert own_tmp(service_settings(unit + "\n[Service]\nDynamicUser=yes\n")) == ["DynamicUser=yes"]
    assert own_tmp(service_settings(unit + "\n[Service]\nTemporaryFileSystem=/tmp:ro\n")) != []
    assert own_tmp(service_settings(unit + "\n[Service]\nTemporaryFileSystem=/var/cache\n")) == []
    assert own_tmp(service_settings(unit + "\n[Service]\nInaccessiblePaths=-/tmp/\n")) != []
