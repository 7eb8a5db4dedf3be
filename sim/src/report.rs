//! The HTML failure report: one self-contained page per run (inline CSS,
//! SVG and a little JavaScript; nothing fetched from the network) that a
//! person opens to see what went wrong, in the spirit of Porcupine's
//! visualization:
//!
//! - the verdict, the failed checks' findings and the command that replays
//!   the run;
//! - one time axis with the leader of each term, every injected fault (from
//!   injection to undo), and a row per client with a bar per operation from
//!   invocation to completion, coloured by outcome; the operations a
//!   checker implicated are red (see [`Implicated`]), the operations that
//!   frame them (a counterexample's linearized prefix, the writes of an
//!   implicated revision) outlined;
//! - the trace lines around the violation, the implicated ones marked;
//! - the run's parameters and full verdict.
//!
//! Everything here is pure: the page is rendered from what the run
//! recorded, so a seed renders the same page every time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use cairn_core::kv::Revision;

use crate::checker::implicated::Implicated;
use crate::checker::verdict::RunVerdict;
use crate::event_log::EventLogConflict;
use crate::history::{History, Operation, OperationRecord, Outcome};
use crate::swarm::{ScheduledFault, SwarmParameters};
use crate::time::SimTime;

/// The report's file name, next to trace.log, history.txt and verdict.txt.
pub const REPORT_FILE: &str = "report.html";
/// Trace lines shown before the violation's first trace line.
pub const TRACE_LINES_BEFORE: usize = 80;
/// Trace lines shown from it on.
pub const TRACE_LINES_AFTER: usize = 40;
/// Width of the timeline's drawing area at zoom 1, in pixels.
const PLOT_WIDTH: f64 = 1200.0;
/// Width of the row labels.
const GUTTER: f64 = 110.0;
/// Height of one row.
const ROW: f64 = 16.0;
/// Most time-axis ticks.
const TICKS_MAX: u64 = 30;
/// Most fault lanes (faults beyond share the last lane).
const FAULT_LANES_MAX: usize = 12;
/// Findings listed per check (verdict.txt and the verdict below list all).
const FINDINGS_PER_CHECK_MAX: usize = 5;
/// Characters of a finding shown in the list (the tooltip has it all).
const FINDING_CHARS_MAX: usize = 200;

/// What the report is made of: what one run recorded.
#[derive(Clone, Copy, Debug)]
pub struct ReportInput<'a> {
    /// The drawn parameters.
    pub parameters: &'a SwarmParameters,
    /// The planted bug's name, if any.
    pub bug: Option<&'a str>,
    /// Every checker's verdict.
    pub verdict: &'a RunVerdict,
    /// Members that applied different events at one revision.
    pub conflicts: &'a [EventLogConflict],
    /// The client history.
    pub history: &'a History,
    /// The kept trace lines, oldest first, each `<seconds>s <text>`.
    pub trace: &'a [String],
    /// Simulated time the run took.
    pub simulated: Duration,
    /// The command that replays the run.
    pub replay_command: &'a str,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A trace line's simulated time, in seconds.
fn trace_time(line: &str) -> Option<f64> {
    let (stamp, _) = line.split_once(' ')?;
    stamp.strip_suffix('s')?.parse().ok()
}

/// A trace line's text after its time stamp.
fn trace_text(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, text)| text)
}

fn seconds(time: SimTime) -> f64 {
    time.as_duration().as_secs_f64()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One operation in a line a person reads.
fn describe(record: &OperationRecord) -> String {
    let what = match &record.operation {
        Operation::Put { key, value, lease } if *lease != 0 => {
            format!("put {}={} lease {lease}", lossy(key), lossy(value))
        }
        Operation::Put { key, value, .. } => format!("put {}={}", lossy(key), lossy(value)),
        Operation::Get { key, consistency } => format!("get {} ({consistency:?})", lossy(key)),
        Operation::Delete { key } => format!("delete {}", lossy(key)),
        Operation::CompareAndSwap {
            key,
            comparison,
            value,
            ..
        } => format!(
            "cas {} if {comparison:?} then ={}",
            lossy(key),
            lossy(value)
        ),
        Operation::RangePrefix {
            prefix,
            consistency,
        } => format!("range {}* ({consistency:?})", lossy(prefix)),
        Operation::LeaseGrant { ttl_seconds } => format!("lease-grant ttl {ttl_seconds}s"),
        Operation::LeaseKeepAlive { lease } => format!("lease-keepalive {lease}"),
        Operation::LeaseRevoke { lease } => format!("lease-revoke {lease}"),
        Operation::LeaseTimeToLive { lease } => format!("lease-timetolive {lease}"),
        Operation::Txn { request } => format!(
            "txn ({} compares, {} then-ops, {} else-ops)",
            request.compare.len(),
            request.success.len(),
            request.failure.len()
        ),
    };
    let outcome = match &record.outcome {
        Outcome::Completed { at, result } => {
            format!("→ {at}: ok at revision {}", result.revision())
        }
        Outcome::Failed { at, error } => format!("→ {at}: refused: {error}"),
        Outcome::Indeterminate { error } => format!("→ unknown: {error}"),
        Outcome::Pending => "→ pending".to_string(),
    };
    format!(
        "{} {} {what} [{} {outcome}]",
        record.id, record.client, record.invoked_at
    )
}

/// The revision a completed write created, if any.
fn written_revision(record: &OperationRecord) -> Option<Revision> {
    match &record.outcome {
        Outcome::Completed { result, .. } if record.operation.may_write() => {
            Some(result.revision())
        }
        _ => None,
    }
}

/// A stretch of the time axis with a label.
struct Span {
    start: f64,
    end: f64,
    label: String,
    class: &'static str,
    member: String,
}

/// Who led which term, from the trace's `ready` lines.
fn leader_spans(trace: &[String], end: f64) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    // (term, member, start) of the leadership in force.
    let mut current: Option<(u64, String, f64)> = None;
    let close = |spans: &mut Vec<Span>, current: &mut Option<(u64, String, f64)>, at: f64| {
        if let Some((term, member, start)) = current.take() {
            spans.push(Span {
                start,
                end: at,
                label: format!("term {term}: leader {member}"),
                class: "leader",
                member,
            });
        }
    };
    for line in trace {
        let Some(at) = trace_time(line) else {
            continue;
        };
        let text = trace_text(line);
        if let Some(rest) = text.strip_prefix("ready ") {
            let mut words = rest.split_whitespace();
            let member = words.next().unwrap_or_default().to_string();
            let term = words
                .next()
                .and_then(|word| word.strip_prefix("term="))
                .and_then(|term| term.parse::<u64>().ok());
            let leads = words.next() == Some("role=Leader");
            let Some(term) = term else {
                continue;
            };
            let same = current
                .as_ref()
                .is_some_and(|(led, by, _)| *led == term && *by == member);
            if leads && !same {
                close(&mut spans, &mut current, at);
                current = Some((term, member, at));
            } else if !leads && current.as_ref().is_some_and(|(_, by, _)| *by == member) {
                close(&mut spans, &mut current, at);
            }
        }
    }
    close(&mut spans, &mut current, end);
    spans
}

/// Every injected fault, from its `nemesis:` trace line to its undo.
fn fault_spans(trace: &[String], schedule: &[ScheduledFault], end: f64) -> Vec<Span> {
    let by_text: BTreeMap<String, &ScheduledFault> = schedule
        .iter()
        .map(|fault| (fault.to_string(), fault))
        .collect();
    let mut spans = Vec::new();
    for line in trace {
        let Some(at) = trace_time(line) else {
            continue;
        };
        let Some(text) = trace_text(line).strip_prefix("nemesis: ") else {
            continue;
        };
        let text = text.trim_end_matches(" (operator task)");
        let lasting = by_text
            .get(text)
            .and_then(|fault| fault.lasting)
            .map_or(0.0, |lasting| lasting.as_secs_f64());
        // Drop the schedule's own "at …s" prefix: the bar shows the time.
        let label = text
            .split_once("s ")
            .filter(|(stamp, _)| stamp.starts_with("at "))
            .map_or(text, |(_, rest)| rest);
        spans.push(Span {
            start: at,
            end: (at + lasting).min(end),
            label: format!("{label} (injected at {at:.3}s)"),
            class: "fault",
            member: String::new(),
        });
    }
    spans
}

/// The index of the trace line the violation shows first at, if any.
fn anchor_line(
    trace: &[String],
    implicated: &Implicated,
    input: &ReportInput<'_>,
) -> Option<usize> {
    let tokens: Vec<String> = implicated
        .operations
        .iter()
        .map(|id| format!(" {id} "))
        .collect();
    let first_instant = implicated.instants.iter().next().map(|at| seconds(*at));
    let liveness_failed = input.verdict.liveness.as_ref().is_some_and(Result::is_err);
    trace.iter().position(|line| {
        let text = trace_text(line);
        text.starts_with("RAFT VIOLATION")
            || text.starts_with("EVENT LOG CONFLICT")
            || tokens.iter().any(|token| line.contains(token.as_str()))
            || applied_revision(text)
                .is_some_and(|revision| implicated.revisions.contains(&revision))
            || first_instant.is_some_and(|at| trace_time(line).is_some_and(|time| time >= at))
            || (liveness_failed && text.starts_with("safety phase over"))
    })
}

/// The revision of an `apply` trace line.
fn applied_revision(text: &str) -> Option<Revision> {
    if !text.starts_with("apply ") {
        return None;
    }
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("revision="))
        .and_then(|revision| revision.parse().ok())
}

/// Whether a trace line mentions something implicated.
fn marks(line: &str, implicated: &Implicated, tokens: &[String]) -> bool {
    let text = trace_text(line);
    text.contains("VIOLATION")
        || text.contains("CONFLICT")
        || tokens.iter().any(|token| line.contains(token.as_str()))
        || applied_revision(text).is_some_and(|revision| implicated.revisions.contains(&revision))
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.fail { color: #b71c1c; } .pass { color: #1b5e20; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; }
#timeline-box { overflow-x: auto; border: 1px solid #ccc; }
svg text { font: 11px monospace; fill: #333; }
rect.ok { fill: #66bb6a; } rect.refused { fill: #ffa726; }
rect.unknown { fill: #bdbdbd; opacity: .55; } rect.pending { fill: #e0e0e0; }
rect.violation { fill: #d32f2f; stroke: #000; stroke-width: 1.5; opacity: 1; }
rect.context { stroke: #1565c0; stroke-width: 1.5; }
rect.related { stroke: #d32f2f; stroke-width: 1.5; }
rect.fault { fill: #9575cd; } rect.leader { opacity: .8; }
rect.selected { stroke: #000; stroke-width: 2.5; }
line.anchor { stroke: #d32f2f; stroke-dasharray: 4 3; }
line.heal { stroke: #555; stroke-dasharray: 2 3; }
line.tick { stroke: #eee; }
mark { background: #ffcdd2; }
#details { min-height: 1.4em; font-family: monospace; font-size: 12px; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .4em; }
"#;

const SCRIPT: &str = r#"
(function () {
  var list = document.getElementById('violation-list');
  var marked = document.querySelectorAll('rect.violation');
  for (var i = 0; i < marked.length; i++) {
    var item = document.createElement('li');
    item.className = 'violation-item';
    item.textContent = marked[i].getAttribute('data-desc');
    list.appendChild(item);
  }
  var svg = document.getElementById('timeline');
  var base = parseFloat(svg.getAttribute('width'));
  var zoom = document.getElementById('zoom');
  var box = document.getElementById('timeline-box');
  var details = document.getElementById('details');
  function first() {
    var target = marked.length ? marked[0] : document.querySelector('line.anchor');
    if (!target) { return; }
    var x = parseFloat(target.getAttribute('x') || target.getAttribute('x1'));
    box.scrollLeft = x * parseFloat(zoom.value) - box.clientWidth / 3;
  }
  zoom.addEventListener('input', function () {
    svg.setAttribute('width', base * parseFloat(zoom.value));
    first();
  });
  svg.addEventListener('click', function (event) {
    var rect = event.target;
    if (!rect.getAttribute || !rect.getAttribute('data-desc')) { return; }
    var old = svg.querySelector('rect.selected');
    if (old) { old.classList.remove('selected'); }
    rect.classList.add('selected');
    details.textContent = rect.getAttribute('data-desc');
  });
  first();
  document.body.setAttribute('data-rendered', 'yes');
})();
"#;

/// Renders the report page.
pub fn render(input: &ReportInput<'_>) -> String {
    let implicated = input.verdict.implicated();
    let passed = input.verdict.is_ok() && input.conflicts.is_empty();
    let parameters = input.parameters;
    let end = input.simulated.as_secs_f64().max(1.0);
    let mut revisions = implicated.revisions.clone();
    revisions.extend(input.conflicts.iter().map(|conflict| conflict.revision));
    let implicated = Implicated {
        revisions,
        ..implicated
    };

    let mut html = String::with_capacity(1 << 20);
    let verdict_word = if passed { "PASS" } else { "FAIL" };
    let bug = input
        .bug
        .map(|bug| format!(", planted bug {bug}"))
        .unwrap_or_default();
    let title = format!(
        "cairn-sim: {} seed {}{bug}: {verdict_word}",
        parameters.scenario, parameters.seed
    );
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body data-verdict=\"{}\">\n<h1 class=\"{}\">{}</h1>\n",
        escape(&title),
        verdict_word.to_lowercase(),
        verdict_word.to_lowercase(),
        escape(&title)
    );
    let _ = writeln!(
        html,
        "<p>Replay:</p><pre id=\"replay\">{}</pre>",
        escape(input.replay_command)
    );

    // The findings.
    let _ = write!(html, "<h2>Violations</h2>\n<ol id=\"findings\">\n");
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for finding in &implicated.findings {
        let count = listed.entry(finding.check.name()).or_insert(0);
        *count += 1;
        if *count > FINDINGS_PER_CHECK_MAX {
            continue;
        }
        let shown: String = finding.text.chars().take(FINDING_CHARS_MAX).collect();
        let more = if shown.len() < finding.text.len() {
            " …"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<li class=\"finding\" data-check=\"{}\" title=\"{}\"><b>{}</b>: {}{more}</li>",
            finding.check.name(),
            escape(&finding.text),
            finding.check.name(),
            escape(&shown)
        );
    }
    for (check, count) in &listed {
        if *count > FINDINGS_PER_CHECK_MAX {
            let _ = writeln!(
                html,
                "<li>… {} more {check} violations (the verdict at the end lists them all)</li>",
                count - FINDINGS_PER_CHECK_MAX
            );
        }
    }
    for conflict in input.conflicts.iter().take(FINDINGS_PER_CHECK_MAX) {
        let _ = writeln!(
            html,
            "<li class=\"finding\" data-check=\"event-log\"><b>event-log</b>: revision {}: member {} applied other events than member {}</li>",
            conflict.revision, conflict.node, conflict.first_node
        );
    }
    if input.conflicts.len() > FINDINGS_PER_CHECK_MAX {
        let _ = writeln!(
            html,
            "<li>… {} more event-log conflicts (verdict.txt lists them)</li>",
            input.conflicts.len() - FINDINGS_PER_CHECK_MAX
        );
    }
    if passed {
        html.push_str("<li>none: every check passed</li>\n");
    }
    html.push_str("</ol>\n");

    render_timeline(&mut html, input, &implicated, end);
    render_trace(&mut html, input, &implicated);
    html.push_str("<h2>Implicated operations</h2>\n<ul id=\"violation-list\"></ul>\n");

    let _ = write!(
        html,
        "<h2>Parameters</h2>\n<pre id=\"parameters\">{}</pre>\n<h2>Verdict</h2>\n<pre id=\"verdict\">{}</pre>\n",
        escape(&parameters.to_string()),
        escape(&input.verdict.to_string())
    );
    let _ = write!(html, "<script>{SCRIPT}</script>\n</body></html>\n");
    html
}

fn render_timeline(html: &mut String, input: &ReportInput<'_>, implicated: &Implicated, end: f64) {
    let records = input.history.records();
    let clients: BTreeSet<u64> = records.iter().map(|record| record.client.0).collect();
    let leaders = leader_spans(input.trace, end);
    let faults = fault_spans(input.trace, &input.parameters.schedule, end);
    // Faults go into lanes so overlapping ones stay visible.
    let mut lane_ends: Vec<f64> = Vec::new();
    let mut fault_lanes = Vec::with_capacity(faults.len());
    for fault in &faults {
        let lane = lane_ends
            .iter()
            .position(|lane_end| *lane_end <= fault.start)
            .unwrap_or_else(|| {
                if lane_ends.len() < FAULT_LANES_MAX {
                    lane_ends.push(0.0);
                }
                lane_ends.len() - 1
            });
        lane_ends[lane] = lane_ends[lane].max(fault.end.max(fault.start + 0.05));
        fault_lanes.push(lane);
    }
    let fault_rows = lane_ends.len().max(1);
    let rows = 1 + fault_rows + clients.len();
    let height = 24.0 + ROW * rows as f64 + 8.0;
    let width = GUTTER + PLOT_WIDTH + 10.0;
    let scale = PLOT_WIDTH / end;
    let x = |time: f64| GUTTER + time * scale;
    let row_y = |row: usize| 24.0 + ROW * row as f64;

    let _ = write!(
        html,
        "<h2>Timeline</h2>\n<p class=\"legend\"><span style=\"background:#66bb6a\">completed</span><span style=\"background:#ffa726\">refused</span><span style=\"background:#bdbdbd\">indeterminate</span><span style=\"background:#d32f2f;color:#fff\">implicated</span><span style=\"outline:2px solid #1565c0\">counterexample prefix</span><span style=\"outline:2px solid #d32f2f\">wrote an implicated revision</span><span style=\"background:#9575cd\">fault</span> zoom <input id=\"zoom\" type=\"range\" min=\"1\" max=\"60\" step=\"1\" value=\"1\"></p>\n<div id=\"details\">Click an operation for its details.</div>\n<div id=\"timeline-box\"><svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" preserveAspectRatio=\"none\">\n"
    );
    // The time axis.
    let step = [1u64, 2, 5, 10, 20, 30, 60, 120, 300, 600]
        .into_iter()
        .find(|step| (end as u64) / step <= TICKS_MAX)
        .unwrap_or(600);
    let mut tick = 0;
    while (tick as f64) <= end && tick <= 100_000 {
        let _ = writeln!(
            html,
            "<line class=\"tick\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"14\" y2=\"{height:.0}\"/><text x=\"{0:.1}\" y=\"11\">{tick}s</text>",
            x(tick as f64)
        );
        tick += step;
    }
    // Row labels.
    let _ = writeln!(
        html,
        "<text x=\"2\" y=\"{:.0}\">leader</text>",
        row_y(0) + 12.0
    );
    let _ = writeln!(
        html,
        "<text x=\"2\" y=\"{:.0}\">faults</text>",
        row_y(1) + 12.0
    );
    let client_rows: BTreeMap<u64, usize> = clients
        .iter()
        .enumerate()
        .map(|(index, client)| (*client, 1 + fault_rows + index))
        .collect();
    for (client, row) in &client_rows {
        let _ = writeln!(
            html,
            "<text x=\"2\" y=\"{:.0}\">client-{client}</text>",
            row_y(*row) + 12.0
        );
    }
    // Leaders, coloured by member.
    let members: BTreeSet<&str> = leaders.iter().map(|span| span.member.as_str()).collect();
    let palette = [
        "#42a5f5", "#ab47bc", "#26a69a", "#ec407a", "#8d6e63", "#78909c", "#d4e157", "#5c6bc0",
        "#ffca28",
    ];
    for span in &leaders {
        let colour = members
            .iter()
            .position(|member| *member == span.member)
            .map_or(palette[0], |index| palette[index % palette.len()]);
        let _ = writeln!(
            html,
            "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{colour}\" data-desc=\"{}\"><title>{}</title></rect>",
            span.class,
            x(span.start),
            row_y(0) + 2.0,
            ((span.end - span.start) * scale).max(1.0),
            ROW - 4.0,
            escape(&span.label),
            escape(&span.label)
        );
    }
    for (span, lane) in faults.iter().zip(&fault_lanes) {
        let _ = writeln!(
            html,
            "<rect class=\"{}\" x=\"{:.1}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" data-desc=\"{}\"><title>{}</title></rect>",
            span.class,
            x(span.start),
            row_y(1 + lane) + 2.0,
            ((span.end - span.start) * scale).max(2.0),
            ROW - 4.0,
            escape(&span.label),
            escape(&span.label)
        );
    }
    // Operations.
    for record in records {
        let row = client_rows[&record.client.0];
        let start = seconds(record.invoked_at);
        let (finish, class) = match &record.outcome {
            Outcome::Completed { at, .. } => (seconds(*at), "ok"),
            Outcome::Failed { at, .. } => (seconds(*at), "refused"),
            Outcome::Indeterminate { .. } => (end, "unknown"),
            Outcome::Pending => (end, "pending"),
        };
        let mut classes = class.to_string();
        if implicated.operations.contains(&record.id) {
            classes.push_str(" violation");
        } else if implicated.context.contains(&record.id) {
            classes.push_str(" context");
        } else if written_revision(record)
            .is_some_and(|revision| implicated.revisions.contains(&revision))
        {
            classes.push_str(" related");
        }
        let description = escape(&describe(record));
        let _ = writeln!(
            html,
            "<rect class=\"{classes}\" x=\"{:.2}\" y=\"{:.0}\" width=\"{:.2}\" height=\"{:.0}\" data-op=\"{}\" data-desc=\"{description}\"><title>{description}</title></rect>",
            x(start),
            row_y(row) + 2.0,
            ((finish - start) * scale).max(1.0),
            ROW - 4.0,
            record.id.0,
        );
    }
    // Healing, and the violation's first trace line.
    for line in input.trace {
        if trace_text(line).starts_with("safety phase over") {
            if let Some(at) = trace_time(line) {
                let _ = writeln!(
                    html,
                    "<line class=\"heal\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"14\" y2=\"{height:.0}\"><title>faults healed at {at:.3}s</title></line>",
                    x(at)
                );
            }
        }
    }
    if let Some(at) = anchor_line(input.trace, implicated, input)
        .and_then(|index| trace_time(&input.trace[index]))
    {
        let _ = writeln!(
            html,
            "<line class=\"anchor\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"14\" y2=\"{height:.0}\"><title>the violation shows first at {at:.3}s</title></line>",
            x(at)
        );
    }
    html.push_str("</svg></div>\n");
}

fn render_trace(html: &mut String, input: &ReportInput<'_>, implicated: &Implicated) {
    let trace = input.trace;
    html.push_str("<h2>Trace around the violation</h2>\n");
    let Some(anchor) = anchor_line(trace, implicated, input) else {
        let _ = writeln!(
            html,
            "<p>No trace line names the violation; trace.log next to this page holds the {} kept lines.</p>",
            trace.len()
        );
        return;
    };
    let tokens: Vec<String> = implicated
        .operations
        .iter()
        .map(|id| format!(" {id} "))
        .collect();
    let first = anchor.saturating_sub(TRACE_LINES_BEFORE);
    let last = (anchor + TRACE_LINES_AFTER).min(trace.len());
    let _ = writeln!(
        html,
        "<p>Trace lines {}–{} of the {} kept (trace.log holds them all); the first implicated line is {}.</p>\n<pre id=\"trace\">",
        first + 1,
        last,
        trace.len(),
        anchor + 1
    );
    for (index, line) in trace.iter().enumerate().take(last).skip(first) {
        let text = escape(line);
        if index == anchor {
            let _ = writeln!(
                html,
                "<mark id=\"anchor\" class=\"implicated\">{text}</mark>"
            );
        } else if marks(line, implicated, &tokens) {
            let _ = writeln!(html, "<mark class=\"implicated\">{text}</mark>");
        } else {
            let _ = writeln!(html, "{text}");
        }
    }
    html.push_str("</pre>\n");
}

#[cfg(madsim)]
pub use self::outcome::render_outcome;

#[cfg(madsim)]
mod outcome {
    use super::{render, ReportInput};
    use crate::runner::RunOutcome;

    /// Renders the report of one simulated run.
    pub fn render_outcome(outcome: &RunOutcome, replay_command: &str) -> String {
        let bug = outcome.bug.map(|bug| bug.name());
        let trace: Vec<String> = outcome.trace.clone();
        render(&ReportInput {
            parameters: &outcome.parameters,
            bug,
            verdict: &outcome.verdict,
            conflicts: &outcome.conflicts,
            history: &outcome.history,
            trace: &trace,
            simulated: outcome.simulated,
            replay_command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::durability::{DurabilityReport, DurabilityViolation};
    use crate::history::{ClientId, OperationId, OperationResult};
    use crate::scenario::Scenario;

    #[test]
    fn the_page_marks_the_implicated_operation_and_its_trace_lines() {
        let scenario = Scenario::parse(
            "t",
            "name = t\ndescription = d\ncluster_size = 3\nduration = 10s\n\ntimeline:\n  at 2s kill leader for 1s\n",
        )
        .expect("parses");
        let parameters = SwarmParameters::draw(&scenario, 5);
        let mut history = History::new();
        let key = b"k<1>".to_vec();
        let put = |value: &str| Operation::Put {
            key: key.clone(),
            value: value.as_bytes().to_vec(),
            lease: 0,
        };
        let first = history.invoke(ClientId(0), put("a"), SimTime(1_000_000_000));
        history.complete(
            first,
            SimTime(1_500_000_000),
            OperationResult::Put { revision: 2 },
        );
        let second = history.invoke(ClientId(1), put("b"), SimTime(3_000_000_000));
        history.complete(
            second,
            SimTime(3_200_000_000),
            OperationResult::Put { revision: 3 },
        );
        history.close();
        let verdict = RunVerdict {
            durability: Some(DurabilityReport {
                writes_checked: 2,
                violations: vec![DurabilityViolation {
                    operation: second,
                    kind: "put",
                    key: "k<1>".into(),
                    revision: 3,
                    reason: "lost".into(),
                }],
            }),
            ..RunVerdict::default()
        };
        let trace: Vec<String> = [
            "0.500000s ready 1f term=2 role=Leader leader=Some(31) commit=1 applied=1 last=1",
            "2.000000s nemesis: at 2.000s kill node 1 for 1s",
            "3.200000s client-1 op#1 Put -> Ok",
            "3.300000s apply 1f index=4 revision=3 events=1",
        ]
        .map(str::to_string)
        .to_vec();
        let page = render(&ReportInput {
            parameters: &parameters,
            bug: Some("skip-wal-fsync"),
            verdict: &verdict,
            conflicts: &[],
            history: &history,
            trace: &trace,
            simulated: Duration::from_secs(12),
            replay_command: "cairn-sim run --scenario t.scn --seed 5",
        });
        assert!(page.contains("data-verdict=\"fail\""));
        assert!(page.contains("class=\"ok violation\""), "{page}");
        assert!(page.contains(&format!("data-op=\"{}\"", OperationId(1).0)));
        assert!(page.contains("<mark id=\"anchor\" class=\"implicated\">3.200000s client-1 op#1"));
        assert!(page.contains("<mark class=\"implicated\">3.300000s apply"));
        assert!(page.contains("term 2: leader 1f"));
        assert!(page.contains("kill node 1 for 1s (injected at 2.000s)"));
        assert!(page.contains("k&lt;1&gt;"), "keys are escaped");
        assert!(!page.contains("k<1>"));
        assert!(
            !page.contains("http://") || page.matches("http://").count() == 1,
            "only the SVG namespace"
        );
    }
}
