//! `cargo bench --bench schedule`: speed of parsing/normalizing calendar
//! expressions and of computing their next elapse. Plain `fn main` timing
//! with `std::time::Instant` (no harness); prints nanoseconds per operation.

use std::hint::black_box;
use std::time::Instant;

use jiff::Zoned;
use unitgen::schedule::CalendarSpec;

const COUNT: usize = 10_000;

/// A mix of the constructs people write, each varied by a number so the
/// 10,000 expressions are not all identical.
fn expressions() -> Vec<String> {
    let templates: &[fn(usize) -> String] = &[
        |_| "daily".into(),
        |_| "weekly".into(),
        |i| format!("*:0/{}", i % 30 + 1),
        |i| format!("Mon..Fri *-*-* {:02}:{:02}", i % 24, i % 60),
        |i| format!("Sat,Sun {}:30", i % 24),
        |i| format!("*-*-{:02} 04:00", i % 28 + 1),
        |i| format!("*-*~{} 23:00", i % 7 + 1),
        |i| format!("*-02-29 {}:00", i % 24),
        |i| format!("2024..2030-{:02}-01", i % 12 + 1),
        |i| format!("*:*:{}.5", i % 60),
        |i| format!("{}:00 Europe/Berlin", i % 24),
        |i| format!("Mon *-*-* {}:15 America/New_York", i % 24),
        |i| format!("*-*-* {}:00:00 UTC", i % 24),
        |_| "quarterly".into(),
        |i| format!("*-{}..12/3-1 00:00", i % 3 + 1),
        |i| format!("Tue,Thu *-*-1..7 {}:00", i % 24),
    ];
    (0..COUNT)
        .map(|i| templates[i % templates.len()](i))
        .collect()
}

fn report(what: &str, ops: usize, start: Instant) {
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    println!("{what:<32} {ops:>6} ops  {ns:>10.0} ns/op");
}

fn main() {
    let exprs = expressions();

    let start = Instant::now();
    for expr in &exprs {
        let spec = CalendarSpec::parse(expr).expect("valid benchmark expression");
        black_box(spec.normalized());
    }
    report("parse + normalize", exprs.len(), start);

    let specs: Vec<CalendarSpec> = exprs
        .iter()
        .map(|e| CalendarSpec::parse(e).expect("valid benchmark expression"))
        .collect();
    let base: Zoned = "2024-01-15T10:17:23[Europe/Berlin]"
        .parse()
        .expect("base time");
    let start = Instant::now();
    for spec in &specs {
        black_box(spec.next_elapse(black_box(&base)));
    }
    report("next elapse (Europe/Berlin base)", specs.len(), start);

    let base: Zoned = "2024-01-15T10:17:23[UTC]".parse().expect("base time");
    let start = Instant::now();
    for spec in &specs {
        black_box(spec.next_elapse(black_box(&base)));
    }
    report("next elapse (UTC base)", specs.len(), start);
}
