//! Latency histograms per operation type, the once-a-second lines and the final summary.
//!
//! Each worker records into its own [`Recorder`] (behind an uncontended mutex); once a
//! second the reporter drains every recorder into an interval [`Snapshot`], prints one line
//! per operation type and folds the interval into the cumulative histograms that the
//! summary is computed from. Latencies are recorded in microseconds and printed in
//! milliseconds.
//!
//! The text format follows `cockroach workload` (an `_elapsed___errors…` header, one line per
//! operation type); `--json` prints the same numbers as one JSON object per line, with
//! `"type": "tick"` or `"type": "summary"`.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The largest latency a histogram holds, in microseconds; larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new empty latency histogram (µs, three significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Latencies and counters of one worker since the reporter last drained it.
#[derive(Debug)]
pub struct Recorder {
    pub latencies: Vec<Histogram<u64>>,
    pub errors: Vec<u64>,
    pub retries: Vec<u64>,
}

impl Recorder {
    pub fn new(ops: usize) -> Recorder {
        Recorder {
            latencies: (0..ops).map(|_| new_histogram()).collect(),
            errors: vec![0; ops],
            retries: vec![0; ops],
        }
    }

    /// Records one finished operation of type `op`.
    pub fn record(&mut self, op: usize, latency: Duration, retries: u32, failed: bool) {
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        if failed {
            self.errors[op] += 1;
        } else {
            // PERF: saturating record; the bounds above make this infallible.
            self.latencies[op].saturating_record(us);
        }
        self.retries[op] += u64::from(retries);
    }

    /// Adds `other` into `self` and resets `other`.
    pub fn drain_from(&mut self, other: &mut Recorder) {
        for (op, h) in other.latencies.iter_mut().enumerate() {
            self.latencies[op]
                .add(&*h)
                .expect("histograms with equal bounds");
            h.reset();
            self.errors[op] += std::mem::take(&mut other.errors[op]);
            self.retries[op] += std::mem::take(&mut other.retries[op]);
        }
    }

    pub fn reset(&mut self) {
        for h in &mut self.latencies {
            h.reset();
        }
        self.errors.iter_mut().for_each(|e| *e = 0);
        self.retries.iter_mut().for_each(|r| *r = 0);
    }
}

/// The numbers printed for one operation type over some period.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub op: String,
    pub ops: u64,
    pub errors: u64,
    pub retries: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Line {
    pub fn from_histogram(op: &str, h: &Histogram<u64>, errors: u64, retries: u64) -> Line {
        let ms = |us: u64| us as f64 / 1000.0;
        let empty = h.is_empty();
        let q = |q: f64| {
            if empty {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        Line {
            op: op.to_string(),
            ops: h.len(),
            errors,
            retries,
            mean_ms: if empty { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: if empty { 0.0 } else { ms(h.max()) },
        }
    }

    /// Sums lines of different operation types (latencies from the merged histogram).
    pub fn total(op_lines: &[Line], merged: &Histogram<u64>) -> Line {
        let mut total = Line::from_histogram("total", merged, 0, 0);
        total.errors = op_lines.iter().map(|l| l.errors).sum();
        total.retries = op_lines.iter().map(|l| l.retries).sum();
        total
    }
}

/// Formats ticks and summaries as text or JSON lines.
#[derive(Debug)]
pub struct Printer {
    pub json: bool,
    ticks_printed: u64,
}

/// How many tick lines go by between repeated text headers.
const HEADER_EVERY: u64 = 20;

const TICK_HEADER: &str =
    "_elapsed___errors__retries__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)";
const SUMMARY_HEADER: &str =
    "_elapsed___errors__retries_____ops(total)___ops/sec(cum)__avg(ms)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)";

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            ticks_printed: 0,
        }
    }

    /// The output for one second: one line per operation type. `interval` is the length
    /// of the tick, `measured` the time since measurement started (after any ramp), and
    /// `cumulative_ops` the operations of each type since then.
    pub fn tick(
        &mut self,
        elapsed: Duration,
        interval: Duration,
        measured: Duration,
        lines: &[Line],
        cumulative_ops: &[u64],
    ) -> String {
        let mut out = String::new();
        let secs = interval.as_secs_f64().max(1e-9);
        let measured_secs = measured.as_secs_f64();
        for (line, cum) in lines.iter().zip(cumulative_ops) {
            let inst = line.ops as f64 / secs;
            let cum_rate = if measured_secs > 0.0 {
                *cum as f64 / measured_secs
            } else {
                0.0
            };
            if self.json {
                let _ = writeln!(
                    out,
                    "{{\"type\":\"tick\",\"elapsed_s\":{:.1},\"op\":\"{}\",\"errors\":{},\"retries\":{},\"ops\":{},\"ops_per_sec\":{:.1},\"ops_per_sec_cum\":{:.1},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
                    elapsed.as_secs_f64(),
                    line.op,
                    line.errors,
                    line.retries,
                    line.ops,
                    inst,
                    cum_rate,
                    line.p50_ms,
                    line.p95_ms,
                    line.p99_ms,
                    line.max_ms
                );
            } else {
                if self.ticks_printed % HEADER_EVERY == 0 {
                    let _ = writeln!(out, "{TICK_HEADER}");
                }
                self.ticks_printed += 1;
                let _ = writeln!(
                    out,
                    "{:>7.1}s {:>8} {:>8} {:>15.1} {:>15.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {}",
                    elapsed.as_secs_f64(),
                    line.errors,
                    line.retries,
                    inst,
                    cum_rate,
                    line.p50_ms,
                    line.p95_ms,
                    line.p99_ms,
                    line.max_ms,
                    line.op
                );
            }
        }
        out
    }

    /// The final summary over the measured period: one line per operation type and a total.
    pub fn summary(&self, measured: Duration, lines: &[Line]) -> String {
        let mut out = String::new();
        let secs = measured.as_secs_f64().max(1e-9);
        if !self.json {
            let _ = writeln!(out, "\n{SUMMARY_HEADER}");
        }
        for line in lines {
            let rate = line.ops as f64 / secs;
            if self.json {
                let _ = writeln!(
                    out,
                    "{{\"type\":\"summary\",\"elapsed_s\":{:.1},\"op\":\"{}\",\"errors\":{},\"retries\":{},\"ops\":{},\"ops_per_sec\":{:.1},\"avg_ms\":{:.3},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
                    measured.as_secs_f64(),
                    line.op,
                    line.errors,
                    line.retries,
                    line.ops,
                    rate,
                    line.mean_ms,
                    line.p50_ms,
                    line.p95_ms,
                    line.p99_ms,
                    line.max_ms
                );
            } else {
                let _ = writeln!(
                    out,
                    "{:>7.1}s {:>8} {:>8} {:>14} {:>15.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {}",
                    measured.as_secs_f64(),
                    line.errors,
                    line.retries,
                    line.ops,
                    rate,
                    line.mean_ms,
                    line.p50_ms,
                    line.p95_ms,
                    line.p99_ms,
                    line.max_ms,
                    line.op
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder_with(latencies_us: &[u64]) -> Recorder {
        let mut r = Recorder::new(2);
        for &us in latencies_us {
            r.record(0, Duration::from_micros(us), 0, false);
        }
        r
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        // 1..=1000 µs: p50 ≈ 0.5 ms, p99 ≈ 0.99 ms, max 1 ms (three significant digits).
        let r = recorder_with(&(1..=1000).collect::<Vec<_>>());
        let line = Line::from_histogram("read", &r.latencies[0], 0, 0);
        assert_eq!(line.ops, 1000);
        assert!((line.p50_ms - 0.5).abs() < 0.002, "{line:?}");
        assert!((line.p95_ms - 0.95).abs() < 0.002, "{line:?}");
        assert!((line.p99_ms - 0.99).abs() < 0.002, "{line:?}");
        assert!((line.max_ms - 1.0).abs() < 0.002, "{line:?}");
        assert!((line.mean_ms - 0.5005).abs() < 0.002, "{line:?}");
        let empty = Line::from_histogram("update", &r.latencies[1], 0, 0);
        assert_eq!((empty.ops, empty.p99_ms, empty.max_ms), (0, 0.0, 0.0));
    }

    #[test]
    fn errors_and_retries_are_counted_and_drained() {
        let mut worker = Recorder::new(2);
        worker.record(1, Duration::from_millis(2), 3, false);
        worker.record(1, Duration::from_millis(2), 1, true);
        // Latencies beyond the bounds are clamped, not lost.
        worker.record(0, Duration::from_secs(3600), 0, false);
        let mut interval = Recorder::new(2);
        interval.drain_from(&mut worker);
        assert_eq!(interval.errors, vec![0, 1]);
        assert_eq!(interval.retries, vec![0, 4]);
        assert_eq!(interval.latencies[1].len(), 1);
        assert_eq!(interval.latencies[0].len(), 1);
        assert!(worker.latencies.iter().all(|h| h.is_empty()));
        assert_eq!(worker.errors, vec![0, 0]);
        assert_eq!(worker.retries, vec![0, 0]);
    }

    #[test]
    fn tick_text_has_header_and_one_line_per_op() {
        let r = recorder_with(&[1000, 2000, 3000, 4000]);
        let lines = vec![
            Line::from_histogram("read", &r.latencies[0], 0, 2),
            Line::from_histogram("update", &r.latencies[1], 1, 0),
        ];
        let mut p = Printer::new(false);
        let out = p.tick(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(2),
            &lines,
            &[10, 0],
        );
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows.len(), 3, "{out}");
        assert_eq!(rows[0], TICK_HEADER);
        assert_eq!(
            rows[1],
            "    1.0s        0        2             4.0             5.0     2.00     4.00     4.00     4.00 read"
        );
        assert!(rows[2].ends_with(" update") && rows[2].contains("       1 "));
        // The header repeats only every HEADER_EVERY ticks.
        let again = p.tick(
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_secs(2),
            &lines,
            &[10, 0],
        );
        assert!(!again.contains("_elapsed"));
    }

    #[test]
    fn summary_and_json_forms() {
        let r = recorder_with(&[500, 1500]);
        let read = Line::from_histogram("read", &r.latencies[0], 0, 1);
        let total = Line::total(std::slice::from_ref(&read), &r.latencies[0]);
        assert_eq!(
            (total.op.as_str(), total.ops, total.retries),
            ("total", 2, 1)
        );
        let text = Printer::new(false).summary(Duration::from_secs(2), &[read.clone(), total]);
        assert!(text.contains(SUMMARY_HEADER));
        assert!(text
            .lines()
            .any(|l| l.ends_with(" read") && l.contains(" 1.0 ")));

        let mut json = Printer::new(true);
        let tick = json.tick(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
            std::slice::from_ref(&read),
            &[2],
        );
        assert_eq!(
            tick.trim_end(),
            "{\"type\":\"tick\",\"elapsed_s\":1.0,\"op\":\"read\",\"errors\":0,\"retries\":1,\"ops\":2,\"ops_per_sec\":2.0,\"ops_per_sec_cum\":2.0,\"p50_ms\":0.500,\"p95_ms\":1.500,\"p99_ms\":1.500,\"max_ms\":1.500}"
        );
        let summary = json.summary(Duration::from_secs(2), &[read]);
        assert!(summary.starts_with("{\"type\":\"summary\""));
        assert!(summary.contains("\"ops_per_sec\":1.0"));
        assert_eq!(summary.lines().count(), 1);
    }
}
