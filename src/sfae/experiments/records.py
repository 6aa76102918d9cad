"""Run records: one line of JSON per finished run, committed under reports/; every report is
built from them alone, so a fresh clone rebuilds every report without the experiments."""

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sfae.atomic import staged_outputs
from sfae.config import PLANNING
from sfae.errors import SfaeError
from sfae.machine import UNKNOWN, machine_kind
from sfae.paths import ProjectPaths

# Files as DVC and git name them (relative to the repository), e.g. in `dvc exp show`.
IN_REPO = ProjectPaths(Path())
EVALUATE_JSON = IN_REPO.evaluate_metrics.as_posix()
MALL_JSON = IN_REPO.mall_metrics.as_posix()
TRAINING_JSONS = tuple(
    (folder / "metrics.json").as_posix() for folder in (IN_REPO.pretrain_log, IN_REPO.finetune_log)
)
# Settings added after runs were recorded, at the value that keeps those runs as they were.
LATER_DEFAULTS = {"data.val_count": 0, "model.arch": "paper", "mall.unlabeled_frames": 1500}


@dataclass(frozen=True)
class RunRecord:  # one finished run: a variant, its seed and settings, and its results
    variant: str
    seed: int
    name: str  # experiment name, or "baseline" for a commit's own results
    rev: str  # git commit holding the run's results (the experiment's commit)
    evaluate: dict  # metrics/evaluate.json
    mall: dict  # metrics/mall.json
    train_seconds: float | None  # pretraining + training wall seconds (None: not known)
    per_image_iou: dict[str, float]  # test image name -> IoU
    commit: str = ""  # the commit the experiment derived from (its code)
    params: dict = field(default_factory=dict)  # every run-changing param, dotted keys
    overrides: dict = field(default_factory=dict)  # the params it set on top of its commit's
    metrics: dict = field(default_factory=dict)  # every metrics file of the run, by path
    machine: str = ""  # where it trained, as its training stage said (else "unknown")
    packages: dict = field(default_factory=dict)
    machine_note: str = ""  # how `machine` was established, where not by the run itself

    @property
    def machine_kind(self) -> str:
        return machine_kind(self.machine or UNKNOWN)

    @property
    def val_count(self) -> int:
        return int(self.params.get("data.val_count", 0))


def trained_on(metrics: dict) -> str:
    """Where its last training stage says it trained (not always the machine that recorded it)."""
    for path in reversed(TRAINING_JSONS):
        if machine := (metrics.get(path) or {}).get("machine"):
            return str(machine)
    return UNKNOWN


def corrected_machines(records: list[RunRecord]) -> list[RunRecord]:
    """A record not saying where it trained takes the kind of a bit-for-bit twin. Idempotent."""
    known = [r for r in records if trained_on(r.metrics) != UNKNOWN]
    corrected = []
    for record in records:
        results = record.params, record.per_image_iou, record.evaluate
        twins = (k for k in known if (k.params, k.per_image_iou, k.evaluate) == results)
        if trained_on(record.metrics) == UNKNOWN and (twin := next(twins, None)):
            note = f"reproduced bit for bit by run {twin.name} on a {twin.machine_kind}"
            record = replace(record, machine=twin.machine_kind, machine_note=note)
        corrected.append(record)
    return corrected


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        flat.update(flatten(value, f"{dotted}.") if isinstance(value, dict) else {dotted: value})
    return flat


def run_params(params: dict) -> dict:
    """The flattened params that can change a run (not the planning sections), LATER_DEFAULTS in."""
    return {**LATER_DEFAULTS, **flatten({k: v for k, v in params.items() if k not in PLANNING})}


def same_value(a, b) -> bool:
    """Equal params; floats that YAML wrote and read back compare equal up to rounding."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _key(record: RunRecord) -> str:
    """A record's identity: its params and its machine kind (another kind rounds otherwise)."""
    return json.dumps([record.params, record.machine_kind], sort_keys=True)


def read_records(path: Path) -> list[RunRecord]:
    """Every record of a JSON Lines file (none without the file); add_records corrected them."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            if line.strip():
                records.append(RunRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as error:
            raise SfaeError(f"{path}:{number}: not a run record ({error})") from error
    return records


def add_records(path: Path, new: Iterable[RunRecord]) -> None:
    """Add the records of new keys; rewrite the file, machines corrected, in a stable order."""
    records = read_records(path)
    known = {_key(record) for record in records}
    added = [r for r in new if _key(r) not in known and not known.add(_key(r))]
    if not added:
        return
    # One record per key: of a run and its bit-for-bit reproduction, the one that says where.
    corrected = corrected_machines([*records, *added])
    told = sorted(corrected, key=lambda r: trained_on(r.metrics) == UNKNOWN)
    chosen = {_key(record): record for record in reversed(told)}  # the first of each key
    ordered = sorted(chosen.values(), key=lambda r: (r.variant, _key(r), r.rev))
    with staged_outputs(path) as (staged,):
        staged.write_text("".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in ordered))
