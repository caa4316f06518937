//! Micro-benchmark of the per-message work: the message id, and the message itself written the
//! way the component writes it (serialised once, recipient and id put in) beside the general
//! way (an element tree built with the XMPP parsers, then serialised by xso, as tokio-xmpp's
//! stream writer does). Run with `cargo bench --bench stanza`; `bench/limits.py` runs it and
//! records the medians in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jid::BareJid;
use xmpp_broadcast::xmpp::{Announcement, message_id};

/// A maintenance notice of a typical size, with characters that must be escaped.
const SUBJECT: &str = "Planned maintenance tonight";
const BODY: &str = "The server will be down for maintenance on 2026-12-01 from 22:00 to \
    23:00 UTC. Messages sent meanwhile are delivered afterwards. Questions: ops@example.com \
    & https://status.example.com <status page>.";

fn recipients() -> Vec<BareJid> {
    (1..=1000)
        .map(|i| BareJid::new(&format!("u{i:07}@example.com")).expect("valid JID"))
        .collect()
}

fn stanza(c: &mut Criterion) {
    let recipients = recipients();
    let sender = BareJid::new("admin@example.com").expect("valid JID");
    let announcement = Announcement::new(4711, sender, SUBJECT, BODY);
    let mut group = c.benchmark_group("stanza");
    group.throughput(Throughput::Elements(1));

    let mut next = recipients.iter().cycle();
    group.bench_function("message_id", |b| {
        b.iter(|| message_id(black_box(4711), next.next().expect("endless")))
    });

    let mut next = recipients.iter().cycle();
    let mut out = Vec::with_capacity(64 * 1024);
    group.bench_function("write_message", |b| {
        b.iter(|| {
            if out.len() > 60 * 1024 {
                out.clear();
            }
            announcement.write_message(next.next().expect("endless"), &mut out);
        })
    });

    let mut next = recipients.iter().cycle();
    group.bench_function("build_element_tree", |b| {
        b.iter(|| announcement.message_to(next.next().expect("endless").clone()))
    });

    let mut next = recipients.iter().cycle();
    group.bench_function("build_and_serialise_element_tree", |b| {
        b.iter(|| {
            let message = announcement.message_to(next.next().expect("endless").clone());
            xso::to_vec(&message).expect("serialisable")
        })
    });
    group.finish();
}

criterion_group!(benches, stanza);
criterion_main!(benches);
