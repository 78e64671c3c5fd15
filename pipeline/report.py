"""The run report: one self-contained HTML page from the committed stage outputs (no recomputation).

Sections: the data (splits, label), top features with their quality flags,
top pairs, the search's decisions (per method: what it kept and the
validation AUC before and after; the study's trials), a model comparison
table (the unsearched baseline, each searched model, the final trained
model), the promotion decision against the champion, and the plots (ranking, learning curve, Pareto front) embedded as
PNG data URIs. Rendered with Jinja2 (autoescaped).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from methods import METHODS
from pipeline import catalog

PLOTS = ((catalog.RANKING_PLOT, "Feature ranking"), (catalog.LEARNING_CURVE, "Learning curve"), (catalog.PARETO, "Study"))

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CTR pipeline report: {{ out }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222 }
table { border-collapse: collapse; margin: 0.5em 0 1.5em } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left }
th { background: #f3f3f3 } td.num { text-align: right; font-variant-numeric: tabular-nums } .flag { color: #b00 }
img { max-width: 100%; border: 1px solid #ddd }
</style></head><body>
<h1>CTR pipeline report</h1>
<p>Output <code>{{ out }}</code>{% if run %}; run started {{ run.started }}, code {{ run.code_version }}{% endif %}.</p>
{% if run %}<table><tr><th>stage</th><th>action</th><th>wall s</th><th>fingerprint</th></tr>
{% for name, s in run.stages.items() %}<tr><td>{{ name }}</td><td>{{ s.action }}</td><td class="num">{{ "%.1f"|format(s.wall_seconds) }}</td><td><code>{{ s.fingerprint }}</code></td></tr>{% endfor %}
</table>{% endif %}
{% if splits %}<h2>Data</h2><table><tr><th>split</th><th>rows</th><th>positive rate</th></tr>
{% for name, s in splits.items() %}<tr><td>{{ name }}</td><td class="num">{{ "{:,}".format(s.rows|int) }}</td><td class="num">{{ "%.4f"|format(s.positive_rate) }}</td></tr>{% endfor %}
</table>{% endif %}
{% if features %}<h2>Features and selection</h2><table><tr><th>rank</th><th>feature</th><th>kind</th><th>cardinality</th><th>score</th><th>adjusted MI</th><th>quality flags</th><th>selected</th><th>reason</th></tr>
{% for f in features %}<tr><td class="num">{{ f.rank }}</td><td>{{ f.feature }}</td><td>{{ f.kind }}</td><td class="num">{{ "{:,}".format(f.cardinality) }}</td>
<td class="num">{{ "%.4g"|format(f.score) }}</td><td class="num">{{ "%.4g"|format(f.adjusted_mi) }}</td><td class="flag">{{ flags.get(f.feature, [])|join(", ") }}</td>
<td>{{ ("yes" if f.selected else "no") if f.selected is defined and f.selected is not none else "" }}</td><td>{{ f.reason if f.reason is defined and f.reason is not none else "" }}</td></tr>{% endfor %}
</table>{% if features and features[0].selected is defined %}<p>{{ features|selectattr("selected")|list|length }} of {{ features|length }} features go on to search and train (rank.select; docs/methods/ranking.md).</p>{% endif %}
<p>Quality flags: {% for flag, names in flag_lists.items() %}{{ flag }} {{ names|length }}{% if names %} ({{ names|join(", ") }}){% endif %}{% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
{% if pairs %}<h2>Top pairs</h2><table><tr>{% for c in pairs[0].keys() %}<th>{{ c }}</th>{% endfor %}</tr>
{% for p in pairs %}<tr>{% for v in p.values() %}<td>{{ v if v is string or v is none else "%.4g"|format(v) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if search %}<h2>Search decisions</h2>
{% if search.fields %}<p>Ranking budget: {{ search.fields.fields|length }} fields kept{% if search.fields.dropped %}, dropped {{ search.fields.dropped|join(", ") }}{% endif %}.</p>{% endif %}
<ul>{% for line in decisions %}<li>{{ line }}</li>{% endfor %}</ul>
{% if trials %}<h3>Study trials</h3><table><tr><th>trial</th><th>state</th><th>model</th><th>dim</th><th>lr</th><th>valid AUC</th><th>params</th><th>Pareto</th></tr>
{% for t in trials %}<tr><td class="num">{{ t.number }}</td><td>{{ t.state }}</td><td>{{ t.model }}</td><td class="num">{{ t.dim }}</td><td class="num">{{ "%.2g"|format(t.lr) }}</td>
<td class="num">{{ "%.6f"|format(t.auc) if t.auc is not none else "" }}</td><td class="num">{{ "{:,}".format(t.params|int) if t.params is not none else "" }}</td><td>{{ "chosen" if t.chosen else ("yes" if t.front else "") }}</td></tr>{% endfor %}
</table>{% endif %}{% endif %}
{% if models %}<h2>Model comparison</h2><table><tr><th>model</th><th>valid AUC</th><th>test AUC</th><th>parameters</th><th>note</th></tr>
{% for m in models %}<tr><td>{{ m.name }}</td><td class="num">{{ "%.6f"|format(m.valid_auc) if m.valid_auc is not none else "" }}</td>
<td class="num">{{ "%.6f"|format(m.test_auc) if m.test_auc is not none else "" }}</td><td class="num">{{ "{:,}".format(m.params|int) if m.params is not none else "" }}</td><td>{{ m.note }}</td></tr>{% endfor %}
</table><p>The test split is read once, by the train stage; every search decision used the validation split.</p>{% endif %}
{% if promotion %}<h2>Champion and challenger</h2>
<p><b>{{ promotion.decision }}</b>: {{ promotion.registered_model }} v{{ promotion.challenger.version }} is now <code>@{{ promotion.alias }}</code>. {{ promotion.reason }}.</p>
{% if promotion.champion.version %}<table><tr><th></th><th>this run's model (v{{ promotion.challenger.version }})</th><th>champion (v{{ promotion.champion.version }})</th></tr>
{% for key in ("valid_auc", "test_auc", "valid_logloss", "test_logloss") %}<tr><td>{{ key }}</td>
<td class="num">{{ "%.6f"|format(promotion.challenger.metrics[key]) if key in promotion.challenger.metrics else "" }}</td>
<td class="num">{{ "%.6f"|format(promotion.champion.metrics[key]) if key in promotion.champion.metrics else "" }}</td></tr>{% endfor %}
</table><p>Both scored on this run's valid and test rows, each with its own encoder; the decision uses valid AUC (margin {{ promotion.margin }}) and the data checks.</p>
{% if promotion.data_checks.drift %}<p>Largest drift against the champion's train data: {% for name, value in promotion.data_checks.drift|dictsort(by="value", reverse=true) %}{% if loop.index <= 5 %}{{ name }} {{ "%.3f"|format(value) }}{% if not loop.last and loop.index < 5 %}, {% endif %}{% endif %}{% endfor %}.</p>{% endif %}{% endif %}{% endif %}
{% for title, uri in plots %}<h2>{{ title }}</h2><img alt="{{ title }}" src="{{ uri }}">{% endfor %}
</body></html>
"""


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _decisions(search: dict[str, Any]) -> list[str]:
    lines = [line for name, method in METHODS.items() if (found := search.get(name)) for line in method.report_lines(found)]
    if optuna := search.get("optuna"):
        chosen = optuna["chosen"]
        lines.append(
            f"Optuna chose trial {chosen['number']} ({chosen['config']['model']}, d={chosen['config']['embedding_dim']}, "
            f"{int(chosen['params']):,} params, valid AUC {_auc(chosen['valid_auc'])}): {optuna['rule']}; {optuna['pruned']} trials pruned"
        )
    return lines


def _auc(value: float | None) -> str:
    return f"{value:.6f}" if value is not None else "n/a"


def _blend_note(params: dict[str, Any], deep: str) -> str:
    """The blend's weights in words; runs before k-part blends kept one weight, on the deep model."""
    if "weights" in params:
        parts = ", ".join(f"{w:.3f} {name}" for name, w in zip(params["parts"], params["weights"], strict=True))
        return f"weights {parts}, fitted on valid (valid AUC cross-fitted)"
    return f"weight {params['weight']:.3f} on {deep}, fitted on valid (valid AUC cross-fitted)"


def _models(search: dict[str, Any], baseline: dict[str, Any] | None, train: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    if baseline:
        rows.append(
            {"name": "baseline (unsearched)", "valid_auc": baseline["valid_auc"], "test_auc": None, "params": None, "note": "search stage"}
        )
    for name, method in METHODS.items():
        if (found := search.get(name)) and (row := method.model_row(found)) is not None:
            rows.append({**row, "test_auc": None, "note": "search stage"})
    train = train or {}
    candidates = train.get("candidates") or {}  # written before the run chose among candidates: the deep model alone
    deep = train.get("deep_model", train.get("model"))
    methods = ", ".join(m.applied_flag for m in METHODS.values() if m.applied_flag and train.get(m.applied_flag)) or "trained"
    for name, found in (candidates or ({deep: {**train, "kind": "deep"}} if train else {})).items():
        baseline = train.get("baselines", {}).get(name)
        note = {
            "deep": methods,
            "gbdt": _gbdt_note(baseline),
            "linear": f"C {found['params'].get('C_chosen')} (picked on valid), crosses: {found['params'].get('crosses')}",
            "blend": _blend_note(found["params"], deep) if found["kind"] == "blend" else "",
        }[found["kind"]]
        how = "best valid AUC" if train.get("choose", "best") == "best" else f"train.choose: {train['choose']}"
        chosen = f" — chosen ({how})" if name == train.get("model") and candidates else ""
        params = train.get("params") if found["kind"] == "deep" else None
        rows.append(
            {
                "name": f"{name} ({found['kind']})",
                "valid_auc": found["valid_auc"],
                "test_auc": found.get("test_auc"),
                "params": params,
                "note": note + chosen,
            }
        )
    return rows


def render_report(out: Path, left_out: frozenset[str] = frozenset()) -> str:
    """The report's HTML for the committed outputs under `out`, but those of the stages `left_out` (no longer part of
    the run: an earlier run's search folder after `search.methods: []`, its decision after promote is turned off)."""
    feature_map = _json(catalog.FEATURE_MAP.at(out)) or {}
    quality = _json(catalog.QUALITY.at(out)) or {}
    flag_lists = quality.get("flags", {})
    flags: dict[str, list[str]] = {}
    for flag, names in flag_lists.items():
        for name in names:
            flags.setdefault(name if isinstance(name, str) else name.get("feature", str(name)), []).append(flag)
    ranking, pairs = catalog.RANKING.at(out), catalog.PAIRS.at(out)
    features = pl.read_csv(ranking).to_dicts() if ranking.is_file() else []  # every feature: the selection's decision table
    pairs = pl.read_csv(pairs).head(10).to_dicts() if pairs.is_file() else []
    search = {m: _json(catalog.method_summary(m).at(out)) for m in (*METHODS, "optuna")} | {"fields": _json(catalog.FIELDS.at(out))}
    search = {k: v for k, v in search.items() if v is not None and "search" not in left_out}
    trials = []
    if optuna := search.get("optuna"):
        for t in optuna["trials"]:
            config = t.get("config") or {}
            values = t.get("values") or [None, None]
            trials.append(
                {
                    "number": t["number"],
                    "state": t["state"],
                    "model": config.get("model", t["params"].get("model")),
                    "dim": config.get("embedding_dim", ""),
                    "lr": config.get("learning_rate", 0.0),
                    "auc": values[0],
                    "params": values[1],
                    "front": t["number"] in optuna["front"],
                    "chosen": t["number"] == optuna["chosen"]["number"],
                }
            )
    plots = []
    for output, title in PLOTS:
        path = output.at(out)
        if path.is_file():
            plots.append((title, "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()))
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string(TEMPLATE).render(
        out=str(out),
        run=_json(out / catalog.RUN_JOURNAL),
        splits=feature_map.get("splits", {}),
        features=features,
        flags=flags,
        flag_lists=flag_lists,
        pairs=pairs,
        search=search,
        decisions=_decisions(search),
        trials=trials,
        models=_models(search, _json(catalog.SEARCH_BASELINE.at(out)), _json(catalog.TRAIN_METRICS.at(out))),
        promotion=None if "promote" in left_out else _json(catalog.DECISION.at(out)),
        plots=plots,
    )


# LightGBM's and CatBoost's housekeeping settings, not modelling choices: left out of the report's note
_HOUSEKEEPING = {"objective", "first_metric_only", "verbosity", "seed", "deterministic", "force_row_wise", "random_seed", "verbose"}


def _gbdt_note(baseline: dict | None) -> str:
    """A GBDT candidate's rounds and the settings the run gave it beyond the library's defaults (e.g. cat_smooth)."""
    if not baseline:
        return "default parameters"
    given = {k: v for k, v in (baseline.get("params") or {}).items() if k not in _HOUSEKEEPING}
    settings = ", ".join(f"{k} {v}" for k, v in given.items()) or "default parameters"
    return f"{baseline['rounds']} rounds, {settings}" + (" (others default)" if given else "")
