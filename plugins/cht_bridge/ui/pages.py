"""The HTML of the CHT Bridge page: server-rendered tables and a little JavaScript (sorting, replay).

Every value is escaped; only ids, statuses, counts, times and reasons are shown. Links to Airflow's
own pages (a DAG, a run, Required Actions) open in the top window: the page itself is shown in an
iframe of the Airflow UI (the plugin's ``external_views`` entry).
"""

from __future__ import annotations

import json
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

FORWARD_STATUSES = ("delivered", "failed", "dead", "deleted", "closed")
REVERSE_STATUSES = ("done", "review", "unplaced", "failed", "skipped", "received", "ready")


def dag_url(dag_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}"


def run_url(dag_id: str, run_id: str) -> str:
    return f"{dag_url(dag_id)}/runs/{quote(run_id, safe='')}"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;font-size:14px}
h1{font-size:20px;margin:0 0 12px} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #e2e8f0;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f7fafc;cursor:pointer;user-select:none;white-space:nowrap} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} td.nw{white-space:nowrap}
.st{display:inline-block;border-radius:4px;padding:0 5px;margin:1px;background:#edf2f7;white-space:nowrap}
.success,.delivered,.done{background:#c6f6d5} .failed{background:#fed7d7} .dead{background:#feb2b2}
.running,.queued,.review,.unplaced{background:#fefcbf} .open{background:#fc8181;color:#fff;font-weight:600}
.muted{color:#718096} button{margin:4px 4px 4px 0;padding:4px 10px} #result{margin-top:8px}
a{color:#2b6cb0} form{margin:8px 0}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, i) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const c = r.cells[i]; const v = c.dataset.sort ?? c.textContent.trim();
                     return v === '' || isNaN(v) ? v : Number(v); };
  [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }).forEach(r => body.appendChild(r));
}));
"""

REPLAY_JS = """
const chosen = () => [...document.querySelectorAll('input.pick:checked')].map(c => c.value);
let dryFor = null, dryRun = null;
async function replay(dry, status) {
  const ids = chosen(); const out = document.getElementById('result');
  if (!ids.length) { out.textContent = 'Choose rows first.'; return; }
  if (!dry && dryFor !== JSON.stringify([ids, status])) { out.textContent = 'Run the dry run of these rows first.'; return; }
  out.textContent = (dry ? 'Starting a dry run…' : 'Starting the replay…');
  const r = await fetch(API + '/replay', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({ids, dry_run: dry, status, after_dry_run: dry ? null : dryRun})});
  const run = await r.json();
  if (!r.ok) { out.textContent = 'Airflow refused: ' + (run.detail || r.status); return; }
  out.innerHTML = ''; const a = document.createElement('a'); a.href = run.url; a.target = '_top';
  a.textContent = run.dag_id + ' / ' + run.run_id; a.id = dry ? 'dry-run-link' : 'replay-link';
  out.append((dry ? 'Dry run ' : 'Replay '), a, ' '); const s = document.createElement('span');
  s.id = dry ? 'dry-run-state' : 'replay-state'; out.append(s);
  for (let i = 0; i < 600; i++) {
    const q = await fetch(ROOT + '/api/runs/' + encodeURIComponent(run.dag_id) + '/' +
      encodeURIComponent(run.run_id) + '?task_id=' + run.task_id);
    const st = await q.json();
    s.textContent = st.state + (st.counts ? ': ' + Object.entries(st.counts).map(([k, v]) => k + ' ' + v).join(', ') : '');
    s.className = 'st ' + st.state;
    if (st.state === 'success' || st.state === 'failed') {
      if (dry && st.state === 'success') { dryFor = JSON.stringify([ids, status]); dryRun = run.run_id;
        document.getElementById('do-replay').disabled = false; }
      return;
    }
    await new Promise(res => setTimeout(res, 2000));
  }
}
document.querySelectorAll('input.pick').forEach(c => c.addEventListener('change', () => {
  document.getElementById('do-replay').disabled = dryFor !== JSON.stringify([chosen(), currentStatus()]);
}));
const all = document.getElementById('pick-all');
if (all) all.addEventListener('change', () => document.querySelectorAll('input.pick').forEach(c => {
  c.checked = all.checked; c.dispatchEvent(new Event('change')); }));
"""


def _page(title: str, body: str, script: str = "") -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}<script>{SORT_JS}{script}</script></body></html>"
    )


def _statuses(counts: dict[str, int], order: tuple[str, ...]) -> str:
    names = [s for s in order if s in counts] + sorted(set(counts) - set(order))
    return (
        " ".join(f"<span class='st {_e(s)}' data-status='{_e(s)}'>{_e(s)} <b>{counts[s]}</b></span>" for s in names)
        or "<span class='muted'>empty</span>"
    )


def pipelines_page(rows: list[dict[str, Any]], prefix: str) -> str:
    """One row per pipeline the user may read."""
    lines = []
    for r in rows:
        name, run = r["pipeline"], r["last_run"]
        counts = r["counts"]
        order = FORWARD_STATUSES if r["kind"] == "forward" else REVERSE_STATUSES
        run_cell = (
            "<span class='muted'>never</span>"
            if run is None
            else f"<a target='_top' href='{_e(run_url(name, run['run_id']))}'>{_e(_when(run['run_after']))}</a> "
            f"<span class='st {_e(run['state'])}'>{_e(run['state'])}</span>"
        )
        ledger = _statuses(counts, order) if not r.get("error") else f"<span class='st failed'>{_e(r['error'])}</span>"
        breaker = (
            f"<span class='st open' title='{_e(r['breaker_reason'])}'>open</span>" if r["breaker_open"] else "closed"
        )
        lines.append(
            f"<tr data-pipeline='{_e(name)}'>"
            f"<td><a href='{prefix}/pipelines/{quote(name, safe='')}'>{_e(name)}</a> "
            f"<a class='muted' target='_top' href='{_e(dag_url(name))}'>(DAG)</a></td>"
            f"<td>{_e(r['kind'])}</td><td class='nw'>{_e(r['schedule'] or 'manual')}</td>"
            f"<td data-sort='{_e(run and run['run_after'] and run['run_after'].isoformat())}'>{run_cell}</td>"
            f"<td class='n' data-col='lag' data-sort='{'' if r['lag_seconds'] is None else r['lag_seconds']}'>"
            f"{_lag(r['lag_seconds'])}</td>"
            f"<td data-col='counts' data-sort='{sum(counts.values())}'>"
            f"{ledger}</td>"
            f"<td class='n' data-col='failed_24h'>{r['failed_24h']}</td>"
            f"<td class='n' data-col='dead_24h'>{r['dead_24h']}</td>"
            f"<td data-col='breaker'>{breaker}</td></tr>"
        )
    body = (
        "<h1>CHT Bridge pipelines</h1>"
        "<table id='pipelines' class='sortable'><thead><tr><th>Pipeline</th><th>Kind</th><th>Schedule</th>"
        "<th>Last run</th><th>Lag</th><th>Ledger</th><th>Failed 24 h</th><th>Dead 24 h</th><th>Breaker</th>"
        f"</tr></thead><tbody>{''.join(lines)}</tbody></table>"
        + ("" if rows else "<p class='muted'>No pipeline you may read.</p>")
        + "<p class='muted'>Lag: time since the newest document the destination has was reported in CHT "
        "(reverse: since the newest row was written to CHT). Click a column to sort.</p>"
    )
    return _page("CHT Bridge", body)


def _script_vars(prefix: str, api: str, status: str) -> str:
    return f"const ROOT = {json.dumps(prefix)}; const API = {json.dumps(api)}; const currentStatus = () => {status};"


def failures_page(pipeline: str, found: dict[str, Any], reason: str, status: str, prefix: str) -> str:
    """A forward pipeline's dead letters and failures, with the reason filter and Replay."""
    rows = "".join(
        f"<tr data-doc='{_e(r['doc_id'])}'><td><input type='checkbox' class='pick' value='{_e(r['doc_id'])}'></td>"
        f"<td>{_e(r['doc_id'])}</td><td><span class='st {_e(r['status'])}'>{_e(r['status'])}</span></td>"
        f"<td class='n'>{r['attempts']}</td><td>{_e(r['response_status'])}</td><td>{_e(r['reason'])}</td>"
        f"<td data-sort='{_e(r['when'] and r['when'].isoformat())}'>{_e(_when(r['when']))}</td></tr>"
        for r in found["rows"]
    )
    options = "".join(
        f"<option value='{_e(x['reason'])}'{' selected' if x['reason'] == reason else ''}>"
        f"{_e((x['reason'] or '')[:120])} ({x['count']})</option>"
        for x in found["reasons"]
        if x["reason"]
    )
    statuses = "".join(f"<option{' selected' if s == status else ''}>{s}</option>" for s in ("both", "dead", "failed"))
    shown = len(found["rows"])
    body = (
        f"<p><a href='{prefix}/'>← All pipelines</a></p><h1>{_e(pipeline)}: dead letters and failures</h1>"
        f"<form method='get'>Status <select name='status'>{statuses}</select> "
        f"Reason contains <input name='reason' id='reason' value='{_e(reason)}' size='40' list='reasons'>"
        f"<datalist id='reasons'>{options}</datalist> <button type='submit'>Filter</button></form>"
        f"<p class='muted' id='total'>{found['total']} rows{f', newest {shown} shown' if shown < found['total'] else ''}."
        " Replay sends the chosen documents again (read again from CHT, mapped with the pipeline file as it "
        "is now) with the <code>cht_bridge_replay</code> DAG: a dry run first, then for real.</p>"
        "<button id='do-dry-run' onclick='replay(true, currentStatus())'>Dry run</button>"
        "<button id='do-replay' disabled onclick='replay(false, currentStatus())'>Replay</button>"
        "<div id='result'></div>"
        "<table id='failures' class='sortable'><thead><tr><th><input type='checkbox' id='pick-all'></th>"
        "<th>Document</th><th>Status</th><th>Attempts</th><th>HTTP</th><th>Last answer</th><th>When</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )
    api = f"{prefix}/api/pipelines/{quote(pipeline, safe='')}"
    return _page(f"{pipeline} failures", body, _script_vars(prefix, api, json.dumps(status)) + REPLAY_JS)


def waiting_page(pipeline: str, found: dict[str, Any], prefix: str) -> str:
    """A reverse pipeline's rows waiting: review (answered in Required Actions), unplaced, failed."""
    totals = found["totals"]

    def table(status: str, pick: bool, reason_title: str) -> str:
        rows = "".join(
            f"<tr data-source='{_e(r['source_id'])}'>"
            + (f"<td><input type='checkbox' class='pick' value='{_e(r['source_id'])}'></td>" if pick else "")
            + f"<td>{_e(r['source_id'])}</td><td>{_e(r['source_version'])}</td><td>{_e(r['reason'])}</td>"
            f"<td class='n'>{r['attempts']}</td><td>{_e(_when(r['when']))}</td></tr>"
            for r in found[status]
        )
        head = ("<th></th>" if pick else "") + f"<th>Record</th><th>Version</th><th>{reason_title}</th>"
        return (
            f"<table id='{status}' class='sortable'><thead><tr>{head}<th>Attempts</th><th>When</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )

    required = f"{_e(dag_url(pipeline))}/required_actions"
    body = (
        f"<p><a href='{prefix}/'>← All pipelines</a></p><h1>{_e(pipeline)}: rows waiting</h1>"
        f"<h2>In review ({totals.get('review', 0)})</h2><p>A person decides who each row is: "
        f"<a target='_top' id='required-actions' href='{required}'>answer them in Required Actions</a>.</p>"
        + table("review", False, "Reason")
        + f"<h2>Unplaced ({totals.get('unplaced', 0)})</h2><p class='muted'>No CHT place for the row's code "
        "(the reason names it). Add the code to the place table, then re-match the chosen rows: a dry run "
        "first, then for real.</p>"
        "<button id='do-dry-run' onclick=\"replay(true, 'unplaced')\">Dry run re-match</button>"
        "<button id='do-replay' disabled onclick=\"replay(false, 'unplaced')\">Re-match</button>"
        "<div id='result'></div>"
        + table("unplaced", True, "Missing place")
        + f"<h2>Failed ({totals.get('failed', 0)})</h2><p class='muted'>CHT refused the write, in its words; "
        "fix the cause, then replay the rows from the pipeline's DAG (Param <code>replay</code>).</p>"
        + table("failed", False, "CHT's answer")
    )
    api = f"{prefix}/api/pipelines/{quote(pipeline, safe='')}"
    return _page(f"{pipeline} waiting", body, _script_vars(prefix, api, "'unplaced'") + REPLAY_JS)
