"""The one place that knows where every file of the pipeline lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIRROR_ENV = "SFAE_DATA_MIRROR"


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @classmethod
    def here(cls) -> ProjectPaths:
        """Paths of the project in the current directory (DVC runs stages from the root)."""
        return cls(Path.cwd())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def pennfudan_prepared(self) -> Path:
        return self.prepared / "pennfudan.npz"

    @property
    def mall_prepared(self) -> Path:
        return self.prepared / "mall.npz"

    @property
    def unlabeled_prepared(self) -> Path:
        """The Mall frames after the scored ones, which sparse filtering may learn from."""
        return self.prepared / "mall_unlabeled.npz"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def settings(self) -> Path:
        """What training reads of params.yaml, resolved (the check_params stage writes it)."""
        return self.metrics / "settings.json"

    @property
    def split(self) -> Path:
        return self.metrics / "split.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def final_model(self) -> Path:
        return self.models / "model.keras"

    @property
    def pretrain_log(self) -> Path:
        return self.metrics / "pretrain"

    @property
    def finetune_log(self) -> Path:
        return self.metrics / "finetune"

    @property
    def evaluate_metrics(self) -> Path:
        return self.metrics / "evaluate.json"

    @property
    def per_image(self) -> Path:
        return self.metrics / "per_image.tsv"

    @property
    def mall_metrics(self) -> Path:
        return self.metrics / "mall.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def evaluate_plots(self) -> Path:
        return self.plots / "evaluate"

    @property
    def mall_video(self) -> Path:
        return self.renders / "mall_overlay.mp4"

    @property
    def mall_gif(self) -> Path:
        return self.renders / "mall_overlay.gif"

    @property
    def mall_strip(self) -> Path:
        return self.renders / "mall_strip.png"

    @property
    def mall_probability(self) -> Path:
        return self.renders / "mall_probability.npy"

    @property
    def renders(self) -> Path:
        return self.root / "renders"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def run_records(self) -> Path:
        """Every recorded study and sweep run, one JSON object a line (committed)."""
        return self.reports / "runs.jsonl"
