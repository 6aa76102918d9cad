"""The one place that knows where every file of the pipeline lives."""

from __future__ import annotations

from pathlib import Path

MIRROR_ENV = "SFAE_DATA_MIRROR"


class ProjectPaths:
    def __init__(self, root: Path):
        self.root = root
        self.params = root / "params.yaml"
        self.raw = root / "data" / "raw"
        self.prepared = root / "data" / "prepared"
        self.pennfudan_prepared = self.prepared / "pennfudan.npz"
        self.mall_prepared = self.prepared / "mall.npz"
        # The Mall frames after the scored ones, which sparse filtering may learn from.
        self.unlabeled_prepared = self.prepared / "mall_unlabeled.npz"
        self.metrics = root / "metrics"
        # What training reads of params.yaml, resolved (the check_params stage writes it).
        self.settings = self.metrics / "settings.json"
        self.split = self.metrics / "split.json"
        self.models = root / "models"
        self.final_model = self.models / "model.keras"
        self.pretrain_log = self.metrics / "pretrain"
        self.finetune_log = self.metrics / "finetune"
        self.evaluate_metrics = self.metrics / "evaluate.json"
        self.per_image = self.metrics / "per_image.tsv"
        self.mall_metrics = self.metrics / "mall.json"
        self.evaluate_plots = root / "plots" / "evaluate"
        renders = root / "renders"
        self.mall_video = renders / "mall_overlay.mp4"
        self.mall_gif = renders / "mall_overlay.gif"
        self.mall_strip = renders / "mall_strip.png"
        self.mall_probability = renders / "mall_probability.npy"
        self.reports = root / "reports"
        # Every recorded study and sweep run, one JSON object a line (committed).
        self.run_records = self.reports / "runs.jsonl"

    @classmethod
    def here(cls) -> ProjectPaths:
        """Paths of the project in the current directory (DVC runs stages from the root)."""
        return cls(Path.cwd())
