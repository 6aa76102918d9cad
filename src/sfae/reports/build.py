"""Every report from the run records (`sfae reports`): the study, each sweep, the README blocks."""

from pathlib import Path

from sfae.atomic import staged_outputs
from sfae.config import read_yaml
from sfae.errors import SfaeError
from sfae.experiments.records import RunRecord, read_records
from sfae.experiments.sweep import other_kinds, records_kind, study_plan, study_records, sweeps
from sfae.experiments.sweep_state import sweep_state
from sfae.nn.regularisers.registry import REGULARISERS
from sfae.paths import ProjectPaths
from sfae.plans import load_plans
from sfae.reports.figures import write_selection_chart
from sfae.reports.markdown import join, markdown_table, paragraphs, replace_block
from sfae.reports.study_report import mall_gif_inputs, write_pending_report, write_report
from sfae.reports.sweep_findings import Findings, answer, candidate_verdict, findings
from sfae.reports.sweep_report import render
from sfae.reports.wording import range_said, results_table


def write_study_report(paths: ProjectPaths) -> list[Path]:
    config, params = load_plans(paths.params, REGULARISERS), read_yaml(paths.params.read_text())
    specs = study_plan(config)
    every = read_records(paths.run_records)
    kind = records_kind(every, "paper")
    records = study_records(every, specs, params, kind)
    if len(records) < len(specs):
        print(f"study: {len(specs) - len(records)} of {len(specs)} runs have no record yet")
    if not records:
        raise SfaeError(f"{paths.run_records}: no study runs recorded; run `make study` first")
    left_out = other_kinds(every, specs, params, kind)
    have = {(record.variant, record.seed) for record in records}
    planned = [(spec.as_dict()["variant"], spec.as_dict()["seed"]) for spec in specs]
    missing = {v: [s for w, s in planned if w == v and (w, s) not in have] for v, _ in planned}
    missing = {variant: seeds for variant, seeds in missing.items() if seeds}  # plan order
    if absent := [v for v in missing if v not in {variant for variant, _ in have}]:
        print(f"study: no {kind} run of {', '.join(absent)} yet; the report says what is missing")
        return write_pending_report(records, missing, len(specs), kind, paths.reports, left_out)
    gif = mall_gif_inputs(records, paths)
    if gif is None:
        print("study: Mall predictions of some variant are not here; the GIF stays as it was")
    return write_report(records, params, paths.reports, *(gif or (None, None)), left_out)


def write_all_sweep_reports(paths: ProjectPaths) -> list[Path]:
    config, params = load_plans(paths.params, REGULARISERS), read_yaml(paths.params.read_text())
    records = read_records(paths.run_records)
    readme = paths.root / "README.md"
    return write_sweep_reports(sweeps(config, params, records), records, paths.reports, readme)


def write_all_reports(paths: ProjectPaths) -> list[Path]:
    return [*write_study_report(paths), *write_all_sweep_reports(paths)]


def _link(found: Findings) -> str:
    return f"[reports/{found.state.sweep.stem}.md](reports/{found.state.sweep.stem}.md)"


def _cell(found: Findings, variant: str) -> str:
    row = found.state.row(variant)
    if row is None or row.label not in found.table:
        return "pending"
    mean, std, n = found.table[row.label]["test_iou"]
    at = "" if row.strength is None else f" @ {row.strength:g}"
    return f"{mean:.3f} ± {std:.3f} (n = {n}){at}"


def _verdicts(found: Findings) -> str:
    family = found.families[0]
    groups = [
        f"{verdict}: {', '.join(sorted(found.variant(c.name) for c in those))}"
        for verdict, those in family.by_verdict.items()
    ]
    if family.pending:
        groups.append(f"pending: {', '.join(found.variant(label) for label in family.pending)}")
    return f"{found.state.sweep.network_name}: {'; '.join(groups)}"


def networks_block(networks: list[Findings]) -> str:
    """The networks side by side, whether the answer changed, and the candidates."""
    rows = [
        [f"`{variant}`", *(_cell(f, variant) for f in networks)]
        for variant in networks[0].state.sweep.config.variants
        if any(f.state.row(variant) for f in networks)
    ]
    names = [f"{f.state.sweep.network_name} ({f.kind})" for f in networks]
    lines = [
        "Test IoU (mean ± std over the final seeds, n: how many) of each variant at the strength "
        "selected on validation images, per network (each column: one machine kind):",
        "",
        *markdown_table(["variant", *names], rows),
        "",
    ]
    open_ = [f"{f.state.sweep.network_name} ({_link(f)})" for f in networks if f.state.gaps]
    if compared := [f for f in networks if f.families]:
        reference, verdicts = compared[0].families[0].reference, "; ".join(map(_verdicts, compared))
        lines.append(
            f"Against {reference}, per network (Holm-corrected intervals over seeds and images): "
            f"{verdicts}."
        )
        heads = [
            f"{f.state.sweep.network_name}: {f.head.verdict if f.head else 'pending'}"
            for f in networks
        ]
        lines += ["", f"Sparse filtering against L1/L2, each tuned: {'; '.join(heads)}."]
    if open_:
        said = "Whether the answer holds for every network is open: sweeps not complete yet"
        lines += ["", f"{said}: {'; '.join(open_)}."]
    elif compared:
        lines += ["", _changed(networks)]
    for f in networks[1:]:
        ranges = "; ".join(range_said(s) for s in f.state.selections)
        lines += ["", f"How much on the {f.state.sweep.network_name}: {ranges}."]
    for f in networks:
        if f.state.sweep.settings.candidates and f.state.leader is not None:
            said = f"Other settings of {f.state.leader.label} for the {f.state.sweep.network_name}"
            lines += ["", f"{said} ({_link(f)}). {candidate_verdict(f)}"]
    return "\n".join(lines)


def _changed(networks: list[Findings]) -> str:
    changed = "The answer changed with the network"
    if len({f.verdict() for f in networks}) == 1:
        return "The answer holds on every network."
    uses = [(label := f.recommended()) and f.variant(label) for f in networks]
    if len(set(uses)) == 1 and uses[0]:
        return f"{changed}, but every network recommends {uses[0]}."
    if len(set(uses)) == 1:
        reference = networks[0].families[0].reference
        return f"{changed}, but no network recommends anything over {reference}."
    picks = [
        f"{f.state.sweep.network_name}: {use or 'none'}"
        for f, use in zip(networks, uses, strict=True)
    ]
    return f"{changed}, and so did the recommendation ({'; '.join(picks)})."


def main_block(found: Findings) -> str:
    """The paper net's answer and its final table, for the README."""
    final = results_table(found.table, found.kind)
    return "\n".join(paragraphs(answer(found), final, f"From {_link(found)}."))


def readme_blocks(everything: list[Findings]) -> dict[str, str]:
    """Block name -> its text: sweep-results, networks, sweep-<name> for each follow-up."""
    networks = [f for f in everything if f.state.sweep.is_network]
    blocks = {}
    if networks and networks[0].state.sweep.name == "paper":
        blocks["sweep-results"] = main_block(networks[0])
    if networks:
        blocks["networks"] = networks_block(networks)
    for found in (f for f in everything if not f.state.sweep.is_network):
        sweep = found.state.sweep
        blocks[f"sweep-{sweep.name}"] = (
            f"**`sweep.{sweep.name}`** ({sweep.network_name}: {join(sweep.settings.grids)}, each "
            f"at its strength selected on validation, compared with {join(sweep.compare_with)}; "
            f"{_link(found)}). {answer(found)}"
        )
    return blocks


def write_sweep_reports(
    sweeps: list, records: list[RunRecord], out_dir: Path, readme: Path | None = None
) -> list[Path]:
    """Each sweep's report and chart (and the README's blocks), each whole or not at all."""
    everything = [findings(sweep_state(sweep, records)) for sweep in sweeps]
    reports = [
        Path(out_dir) / f"{s.stem}{end}" for s in sweeps for end in (".md", "_selection.png")
    ]
    outputs = [*reports, *([readme] if readme else [])]
    if readme is not None:
        try:
            readme_text = readme.read_text()
            for name, body in readme_blocks(everything).items():
                readme_text = replace_block(readme_text, name, body)
        except (OSError, ValueError) as error:
            raise SfaeError(f"{readme}: cannot update its results ({error})") from error
    with staged_outputs(*outputs) as staged:
        for i, found in enumerate(everything):
            staged[2 * i].write_text(render(found), encoding="utf-8")
            write_selection_chart(found.state, staged[2 * i + 1])
        if readme is not None:
            staged[-1].write_text(readme_text, encoding="utf-8")
    return outputs
