"""Settings of the local stack runner itself (`rpm stack`, `make run`, the test fixtures):
where its state lives and where the Debian binaries it starts are. Prefix `RPM_` like every
process's; the settings of the processes it starts are theirs (see `config.StackConfig.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core.settings import BaseRpmSettings
from infra.stack.config import ROOT


class StackSettings(BaseRpmSettings):
    state_dir: Path | None = Field(
        None,
        description="State directory of the local stack (data, logs, pid files, generated secrets); empty: .rpm "
        "in the checkout. Started as root, the servers run as their own users, who must reach it",
    )
    pg_bin: Path = Field(
        Path("/usr/lib/postgresql/15/bin"), description="Directory of PostgreSQL 15's initdb and postgres"
    )
    mosquitto_dynsec_plugin: Path = Field(
        Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
        description="Mosquitto's dynamic-security plugin (the local stack's broker loads it)",
    )

    @field_validator("state_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def state(self) -> Path:
        """The state directory to use."""
        return self.state_dir if self.state_dir is not None else ROOT / ".rpm"
