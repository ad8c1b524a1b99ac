"""Settings from the environment and the command line (the CLI exports them, so job processes agree)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Settings:
    model: str = field(default_factory=lambda: os.environ.get("DETR_MODEL", "facebook/detr-resnet-50"))
    device: str | None = field(default_factory=lambda: os.environ.get("DETR_DEVICE") or None)
    host: str = "127.0.0.1"
    port: int = 8050
    debug: bool = field(default_factory=lambda: os.environ.get("DASH_DEBUG", "0") == "1")
    max_upload_mb: int = field(default_factory=lambda: _env_int("DETR_MAX_UPLOAD_MB", 20))
    max_megapixels: int = field(default_factory=lambda: _env_int("DETR_MAX_MEGAPIXELS", 40))
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    # dataset folders (annotations.json + images) the Evaluate tab offers; the page never sends a path
    datasets: list[str] = field(default_factory=lambda: [d for d in os.environ.get("DETR_DATASETS", "").split(":")
                                                         if d])

    def export(self) -> None:
        """Put the settings that job processes need into the environment."""
        os.environ["DETR_MODEL"] = self.model
        if self.device:
            os.environ["DETR_DEVICE"] = self.device
        os.environ["DETR_MAX_UPLOAD_MB"] = str(self.max_upload_mb)
        os.environ["DETR_MAX_MEGAPIXELS"] = str(self.max_megapixels)
