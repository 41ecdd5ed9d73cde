"""The dataset card (README.md in the Hugging Face card format) written into every export: YAML front
matter, then what the data is, sources and licences, the rubric, models and prompts, the experts,
agreement with confidence intervals (on scores and on step marks), round statistics, how items were accepted and known limitations.

Every number is computed here from the database — the same functions `clinreason agreement --json`,
`clinreason status --json` and `clinreason stats --json` print — and the card ends with those outputs
verbatim in a machine-readable block. Nothing time-dependent is written: re-running the export gives
a byte-identical card.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.kept import current_scan
from clinreason.analytics.scan import ReviewScan
from clinreason.analytics.stats import process_stats, reviewer_table
from clinreason.domain.rubric import rubric_from_dict
from clinreason.store import exports
from clinreason.store import readmodels as store_readmodels

HF_LICENSES = {"mit": "mit", "apache-2.0": "apache-2.0", "apache 2.0": "apache-2.0", "cc-by-4.0": "cc-by-4.0",
               "cc by 4.0": "cc-by-4.0", "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-nc-4.0": "cc-by-nc-4.0",
               "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0", "cc0-1.0": "cc0-1.0", "odc-by": "odc-by"}
ALPHA_RELIABLE, ALPHA_TENTATIVE = 0.8, 0.667


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def pct_ci(ci: list[float] | None) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] %" if ci else "—"


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < bound:
            return label
    return "10M<n<100M"


def hf_license(licenses: dict[str, Counter]) -> tuple[str, list[str]]:
    names = sorted({lic for counter in licenses.values() for lic in counter})
    ids = {HF_LICENSES.get(n.strip().lower()) for n in names}
    if len(ids) == 1 and None not in ids:
        only = ids.pop()
        assert only is not None
        return only, names
    return "other", names


def model_prompts(conn: Connection, project_id: int) -> list[dict[str, Any]]:
    return [{"origin": o, "model": m or "unknown", "prompt_hash": h or "—", "versions": int(n), "tokens": int(t)}
            for o, m, h, n, t in exports.drafting_provenance(conn, project_id=project_id)]


def card_numbers(conn: Connection, *, project: dict[str, Any], rubric_body: dict[str, Any],
                 scan: ReviewScan | None = None, agreement: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the card quotes, from one scan of the reviews (the kept state brought up to date on `conn`,
    unless the caller already has it: `scan`; and the agreement report of that scan, where the caller worked
    it out: `agreement`)."""
    if scan is None:
        scan = current_scan(conn, project_id=project["id"], rubric_body=rubric_body)
    status = store_readmodels.status_counts(conn, project_id=project["id"])
    return {
        "agreement": agreement if agreement is not None else agreement_report(conn, project_id=project["id"],
                                                                            scan=scan),
        "status": status,
        "stats": process_stats(conn, project_id=project["id"], expert_seconds=scan.total_seconds, status=status),
        "reviewers": reviewer_table(scan),
        "models": model_prompts(conn, project["id"]),
    }


def _front_matter(project: dict[str, Any], summary, license_id: str, license_names: list[str]) -> str:
    lines = ["---", f"license: {license_id}"]
    if license_id == "other":
        lines.append(f"license_name: {json.dumps('mixed: ' + '; '.join(license_names) if license_names else 'unspecified', ensure_ascii=False)}")
    langs = sorted(summary.languages) or ["en"]
    lines += ["language:"] + [f"- {lang}" for lang in langs]
    lines += ["task_categories:", "- question-answering", "- text-generation",
              "size_categories:", f"- {size_category(summary.total)}",
              f"pretty_name: {json.dumps(_pretty(project), ensure_ascii=False)}",
              "tags:", "- medical", "- clinical-reasoning", "- chain-of-thought", "- expert-verified", "- clinreason"]
    if summary.fmt in ("jsonl", "parquet", "sft", "dpo", "prm"):
        ext = "parquet" if summary.fmt == "parquet" else "jsonl"
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for name in summary.rows:
            lines += [f"  - split: {'train' if name == 'data' else name}", f"    path: {name}.{ext}"]
    return "\n".join(lines + ["---", ""])


def _pretty(project: dict[str, Any]) -> str:
    return f"{project['name']}: expert-verified clinical reasoning"


def render_card(*, project: dict[str, Any], rubric_body: dict[str, Any], summary, numbers: dict[str, Any]) -> str:
    ag, status, stats = numbers["agreement"], numbers["status"], numbers["stats"]
    rubric = rubric_from_dict(rubric_body)
    license_id, license_names = hf_license(summary.licenses)
    out = [_front_matter(project, summary, license_id, license_names), f"# {_pretty(project)}", ""]
    files = ", ".join(f"`{f}`" for f in summary.files if f != "README.md")
    out += ["## What the data is", "",
            f"{summary.total} exam-style clinical questions, each with a chain-of-thought rationale drafted by a "
            "language model and reviewed, scored and — where it fell short — edited or regenerated under the "
            "guidance of medical experts until they reached consensus (or an adjudicator decided). Built with "
            "clinreason, following the human–LLM hybrid loop of Ding et al. (2025, arXiv 2505.06912).",
            "", f"- format: `{summary.fmt}`; files: {files}",
            "- rows per split: " + ", ".join(f"{k} {v}" for k, v in summary.rows.items()),
            f"- project `{project['name']}`: {status['items']} items, {stats['accepted']} accepted, "
            f"{stats['excluded']} excluded; this export holds {summary.total} of the accepted items",
            "- filters: " + (", ".join(f"{k}={v}" for k, v in summary.filters.items() if v not in (None, []))
                             or "none"),
            "- languages: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.languages.items())),
            "- specialties: " + (", ".join(f"{k} {v}" for k, v in sorted(summary.specialties.items())) or "—"),
            "- decided by: " + (", ".join(f"{k} {v}" for k, v in sorted(summary.consensus.items())) or "—"), ""]
    if summary.fmt == "dpo":
        out += [f"- preference pairs (rejected draft vs accepted version of the same item): {summary.pairs} ("
                + ", ".join(f"{k} {v}" for k, v in summary.records.items()) + "); `rejected_error_steps` lists "
                "the steps of the rejected version that an expert marked as an error", ""]
    if summary.fmt in ("argilla", "labelstudio"):
        tool = "Argilla (`rg.Dataset.from_disk`)" if summary.fmt == "argilla" else \
            "Label Studio (import tasks.json into a project labelled with label_config.xml)"
        out += [f"- for {tool}: {sum(summary.records.values())} records, one per rationale version of these items; "
                "each version's expert reviews are its responses under anonymised reviewer ids, and the version's "
                "lineage (number, parent, origin, model, steps, the accepted version) is in the record's metadata "
                "under `clinreason`", ""]
    if summary.fmt == "prm":
        labels = summary.step_labels
        out += [f"- process labels: {sum(summary.records.values())} reviewed rationale versions of these items ("
                + ", ".join(f"{k} {v}" for k, v in summary.records.items()) + "), "
                f"{sum(labels.values())} steps: {labels.get('error', 0)} `error` (an expert marked the step as an "
                f"error), {labels.get('ok', 0)} `ok` (marked ok, or left unmarked in the version a decision "
                f"accepted), {labels.get('unknown', 0)} `null` (nobody judged it: unknown, not correct)", ""]
    out += ["## Sources and licences", "", "| source | rows | licence |", "| --- | ---: | --- |"]
    for src, n in sorted(summary.by_source.items()):
        lic = "; ".join(f"{k} ({v})" if len(summary.licenses[src]) > 1 else k
                        for k, v in sorted(summary.licenses[src].items()))
        out.append(f"| {src} | {n} | {lic} |")
    out += ["", f"Licence of this dataset: `{license_id}`" + (
        " — the sources carry different or unspecified licences; each row names its own (`license`), and the "
        "most restrictive applies to any use of the whole." if license_id == "other" else "."), ""]
    out += [f"## The rubric (version {rubric.version})", "",
            f"Every dimension is scored {rubric.scale_min}–{rubric.scale_max}; a version passes when every assigned "
            "reviewer accepts it and every dimension reaches its threshold.", "",
            "| dimension | title | threshold | what it measures |", "| --- | --- | ---: | --- |"]
    out += [f"| {d.name} | {d.title} | {d.threshold} | {d.description} |" for d in rubric.dimensions]
    out += ["", "## Models and prompts", "", "| model | prompt hash | origin | versions | tokens |",
            "| --- | --- | --- | ---: | ---: |"]
    out += [f"| {m['model']} | `{m['prompt_hash']}` | {m['origin']} | {m['versions']} | {m['tokens']} |"
            for m in numbers["models"]] or ["| — | — | — | 0 | 0 |"]
    llm = stats["llm"]
    out += ["", f"LLM usage over the whole project: {llm['tokens']['prompt']} prompt + {llm['tokens']['completion']} "
            f"completion tokens, ${llm['cost_usd']:.4f}.", ""]
    out += _experts(numbers["reviewers"], stats)
    out += _agreement(ag)
    out += _rounds(stats)
    out += ["## Project status", "", "| state | items |", "| --- | ---: |"]
    out += [f"| {k} | {v} |" for k, v in status["by_state"].items()]
    out += ["", "## Known limitations", ""] + [f"- {line}" for line in _limitations(ag, status, stats, summary,
                                                                                    license_id)]
    out += ["", "## Machine-readable numbers", "",
            "The outputs of `clinreason agreement --json` (`agreement`), `clinreason status --json` (`status`) and "
            "`clinreason stats --json` (`stats`, the project part) at export time, verbatim.", "",
            "<details><summary>JSON</summary>", "", "```json",
            _machine_json(numbers, {k: v for k, v in summary.to_dict().items() if k != "seconds"}),
            "```", "", "</details>", ""]
    return "\n".join(out)


def _machine_json(numbers: dict[str, Any], export: dict[str, Any]) -> str:
    """`json.dumps({"agreement", "status", "stats", "export"}, ensure_ascii=False, indent=1)`, the same text,
    with the three project parts encoded once per `numbers` (an export of several formats renders a card for
    each; with an indent, json encodes in Python, slowly). A value one level down is its own indented text
    with every line after the first indented once more (JSON text holds no raw newline)."""
    parts = numbers.get("_machine_json")
    if parts is None:
        parts = numbers["_machine_json"] = [_member(key, numbers[name]) for key, name in
                                            (("agreement", "agreement"), ("status", "status"), ("stats", "stats"))]
    return "{\n" + ",\n".join([*parts, _member("export", export)]) + "\n}"


def _member(key: str, value: Any) -> str:
    return f" {json.dumps(key)}: " + json.dumps(value, ensure_ascii=False, indent=1).replace("\n", "\n ")


def _experts(reviewers: list[dict[str, Any]], stats: dict[str, Any]) -> list[str]:
    roles = Counter(r["role"] for r in reviewers)
    specialties = Counter(s for r in reviewers for s in r["specialties"])
    return ["## The experts", "",
            f"{len(reviewers)} experts reviewed ({', '.join(f'{v} {k}' for k, v in sorted(roles.items())) or 'none'}), "
            f"covering {len(specialties)} specialties"
            + (f" ({', '.join(f'{k} {v}' for k, v in sorted(specialties.items()))})" if specialties else "") + ". "
            f"They wrote {sum(r['reviews'] for r in reviewers)} reviews, {fmt(stats['expert_minutes'], 1)} expert "
            f"minutes in all, {fmt(stats['expert_minutes_per_accepted'], 2)} minutes per accepted item. "
            "Reviewers are identified in the data only by anonymised ids (`R-` + 8 hex characters).", ""]


def _agreement(ag: dict[str, Any]) -> list[str]:
    out = ["## Agreement between experts", "",
           f"Unit: the rationale version; raters: the reviewers ({ag['reviewers']}); {ag['reviews']} reviews. "
           f"95 % intervals: percentile bootstrap over units, {ag['bootstrap']['resamples']} resamples, "
           f"seed {ag['bootstrap']['seed']}.", "",
           "| dimension | α ordinal | 95 % CI | α interval | 95 % CI | % agreement | mean pairwise κ (quadratic) | units |",
           "| --- | ---: | --- | ---: | --- | ---: | ---: | ---: |"]
    for name, b in list(ag["dimensions"].items()) + [("overall (sum)", ag["overall"])]:
        out.append(f"| {name} | {fmt(b['alpha_ordinal'])} | {fmt_ci(b['ci95'])} | {fmt(b['alpha_interval'])} | "
                   f"{fmt_ci(b['ci95_interval'])} | {pct(b['percent_agreement'])} | "
                   f"{fmt(b.get('kappa_quadratic_mean'))} | {b['units']} |")
    v = ag["verdict"]
    out += ["", f"Verdicts ({', '.join(v['categories'])}): Fleiss' κ {fmt(v['fleiss_kappa'])} "
            f"{fmt_ci(v['fleiss_ci95'])} on {v['fleiss_units']} versions with {v['raters_per_unit'] or '—'} "
            f"reviewers each; pairwise agreement {pct(v['percent_agreement'])} {pct_ci(v['ci95'])} on "
            f"{v['units']} versions. Cohen's weighted κ was computed for {len(ag['pairs'])} reviewer pairs sharing "
            f"at least {ag['min_pair_overlap']} versions.", ""]
    st = ag["steps"]
    if st["units"]:
        out += [f"Step marks (unit: one step of one version that two or more experts marked ok or error; "
                f"{st['units']} such steps): Krippendorff's α (nominal, ok/error) {fmt(st['alpha_nominal'])}; "
                f"of the steps one expert flagged as an error, {pct(st['both_flagged_share'])} were flagged by a "
                "second expert too.", ""]
    else:
        out += ["Step marks: no step was marked by two or more experts, so agreement on steps cannot be "
                "estimated.", ""]
    return out


def _rounds(stats: dict[str, Any]) -> list[str]:
    r = stats["rounds"]
    out = ["## Review rounds and how items were accepted", "",
           f"Rounds = rationale versions experts reviewed before acceptance: mean {fmt(r['mean'], 2)}, median "
           f"{fmt(r['median'], 1)}, max {fmt(r['max'])}.", "", "| rounds | accepted items |", "| ---: | ---: |"]
    out += [f"| {k} | {v} |" for k, v in r["histogram"].items()]
    out += ["", "| accepted as | items | share |", "| --- | ---: | ---: |"]
    labels = {"drafted": "as drafted", "edited": "after an expert's edit", "regenerated": "after regeneration",
              "adjudication": "by adjudication"}
    out += [f"| {labels.get(k, k)} | {n} | {pct(stats['accepted_as_share'][k])} |"
            for k, n in stats["accepted_as"].items()]
    return out + [""]


def _limitations(ag, status, stats, summary, license_id) -> list[str]:
    lines = []
    weak = [f"{k} (α {v['alpha_ordinal']:.3f})" for k, v in ag["dimensions"].items()
            if v["alpha_ordinal"] is not None and v["alpha_ordinal"] < ALPHA_TENTATIVE]
    if weak:
        lines.append(f"Agreement below Krippendorff's tentative threshold ({ALPHA_TENTATIVE}) on: {', '.join(weak)}; "
                     "those scores are noisy and best used as soft labels.")
    step_alpha = ag["steps"]["alpha_nominal"]
    if step_alpha is not None and step_alpha < ALPHA_TENTATIVE:
        lines.append(f"Experts agree weakly on which steps are errors (α nominal {step_alpha:.3f} over "
                     f"{ag['steps']['units']} doubly-judged steps); step labels are best used as soft labels.")
    undefined = [k for k, v in ag["dimensions"].items() if v["alpha_ordinal"] is None]
    if undefined:
        lines.append("Agreement could not be estimated (too few doubly-reviewed versions, or no variation) on: "
                     + ", ".join(undefined) + ".")
    share = stats["accepted_as_share"].get("adjudication")
    if share:
        lines.append(f"{pct(share)} of accepted items were settled by an adjudicator rather than by reviewer consensus.")
    small = [m for m in status["by_model"] if "smollm" in m.lower()]
    if small:
        lines.append(f"Some drafts come from a very small embedded model ({', '.join(small)}); their reasoning was "
                     "rewritten more often and their style may be uniform.")
    if summary.fmt == "prm":
        lines.append("Process labels cover only steps an expert judged or that stand unmarked in an accepted "
                     "version; a `null` label means unknown, and the rejected versions' unmarked steps are not "
                     "known to be correct. Versions of items not (yet) accepted are not exported.")
    if license_id == "other":
        lines.append("Licences differ between sources (or are unspecified); check each row's `license` before use.")
    if summary.total < stats["accepted"]:
        lines.append(f"This export holds {summary.total} of {stats['accepted']} accepted items (filters above), so the "
                     "project-wide statistics describe a superset of the rows.")
    lines.append(f"Exam-style questions ({', '.join(sorted(summary.languages)) or '—'}) reflect the guidelines and "
                 "conventions of their source exams; rationales are explanations of a given gold answer, not "
                 "clinical advice.")
    lines.append("Reviewer pseudonyms are stable within this database; they hide names but not the number of "
                 "reviews each expert wrote.")
    return lines


def write_card(conn: Connection, *, project: dict[str, Any], rubric_body: dict[str, Any], out: Path, summary,
               licenses: dict[str, str], scan: ReviewScan | None = None,
               numbers: dict[str, Any] | None = None) -> Path:
    """README.md in `out`; `scan`: the review scan brought up to date on `conn`, where the caller has it;
    `numbers`: what `card_numbers` gave, where the caller has them (an export of several formats)."""
    if numbers is None:
        numbers = card_numbers(conn, project=project, rubric_body=rubric_body, scan=scan)
    text = render_card(project=project, rubric_body=rubric_body, summary=summary, numbers=numbers)
    path = out / "README.md"
    if path.is_symlink():
        path.unlink()
    path.write_text(text, encoding="utf-8", newline="\n")
    return path
