//! Micro-benchmark of the per-report CPU work of the ingest path: parse the
//! v1 JSON body, validate it against the catalog, anonymise it. Everything a
//! request costs before it reaches the writer, apart from HTTP.
//!
//! Run with `cargo bench -p anonstats-bench --bench ingest_path`.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use chrono::NaiveDate;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use anonstats::anonymize::{anonymize, Pseudonymizer};
use anonstats::catalog::Catalog;
use anonstats::validation::parse_v1;
use anonstats_bench::generator::LoadGenerator;

fn bodies(n: usize) -> Vec<Vec<u8>> {
    let mut generator = LoadGenerator::new(1, 100_000, 3 * 365);
    (0..n)
        .map(|_| {
            let mut body = Vec::new();
            generator.next_json(&mut body);
            body
        })
        .collect()
}

fn ingest_path(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let pseudonymizer = Pseudonymizer::new(b"0123456789abcdef0123456789abcdef");
    let day = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date");
    let bodies = bodies(256);
    let mut group = c.benchmark_group("report");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("parse_validate", |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            black_box(parse_v1(black_box(&bodies[i]), &catalog).expect("valid"))
        })
    });

    let reports: Vec<_> = bodies
        .iter()
        .map(|b| parse_v1(b, &catalog).expect("valid"))
        .collect();
    let mut j = 0;
    group.bench_function("anonymize", |b| {
        b.iter_batched(
            || {
                j = (j + 1) % reports.len();
                reports[j].clone()
            },
            |report| black_box(anonymize(report, &pseudonymizer, day)),
            BatchSize::SmallInput,
        )
    });

    let mut k = 0;
    group.bench_function("parse_validate_anonymize", |b| {
        b.iter(|| {
            k = (k + 1) % bodies.len();
            let report = parse_v1(black_box(&bodies[k]), &catalog).expect("valid");
            black_box(anonymize(report, &pseudonymizer, day))
        })
    });
    group.finish();
}

criterion_group!(benches, ingest_path);
criterion_main!(benches);
