"""The one place that knows where every file of the pipeline lives."""

from pathlib import Path

MIRROR_ENV = "SFAE_DATA_MIRROR"


class ProjectPaths:
    def __init__(self, root: Path):
        self.root = root
        self.params = root / "params.yaml"
        self.raw = root / "data/raw"
        self.pennfudan_prepared = root / "data/prepared/pennfudan.npz"
        self.mall_prepared = root / "data/prepared/mall.npz"
        # The Mall frames after the scored ones, which sparse filtering may learn from.
        self.unlabeled_prepared = root / "data/prepared/mall_unlabeled.npz"
        self.settings = root / "metrics/settings.json"  # params.yaml, resolved by check_params
        self.split = root / "metrics/split.json"
        self.final_model = root / "models/model.keras"
        self.pretrain_log = root / "metrics/pretrain"
        self.finetune_log = root / "metrics/finetune"
        self.evaluate_metrics = root / "metrics/evaluate.json"
        self.per_image = root / "metrics/per_image.tsv"
        self.mall_metrics = root / "metrics/mall.json"
        self.evaluate_plots = root / "plots/evaluate"
        self.mall_video = root / "renders/mall_overlay.mp4"
        self.mall_gif = root / "renders/mall_overlay.gif"
        self.mall_strip = root / "renders/mall_strip.png"
        self.mall_probability = root / "renders/mall_probability.npy"
        self.reports = root / "reports"
        self.run_records = root / "reports/runs.jsonl"  # every study and sweep run (committed)

    @classmethod
    def here(cls) -> "ProjectPaths":
        """Paths of the project in the current directory (DVC runs stages from the root)."""
        return cls(Path.cwd())
