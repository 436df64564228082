//! Parse throughput of a generated APP-META.xml (60 services, 2,400 settings): our full parse
//! into the model versus roxmltree's bare parse of the same bytes, in one run. Also the time to
//! refuse hostile inputs (billion laughs, 100,000-deep nesting), which must stay in milliseconds.
//! Plain harness (no criterion dependency at run time): `cargo bench -p aps-meta`.

use std::hint::black_box;
use std::time::{Duration, Instant};

fn generate() -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<application xmlns=\"http://apstandard.com/ns/1\" version=\"1.2\">\n<id>http://example.invalid/bench</id><name>bench</name><version>1.0</version><release>1</release>\n<service id=\"root\">\n",
    );
    for svc in 0..60 {
        s.push_str(&format!("<service id=\"svc{svc}\" class=\"account\"><presentation><name>Service {svc}</name><summary>Bench service</summary></presentation><settings>\n"));
        for g in 0..4 {
            s.push_str(&format!(
                "<group class=\"g{g}\"><name xml:lang=\"en-US\">Group {g}</name>\n"
            ));
            for i in 0..10 {
                let id = format!("s{svc}_{g}_{i}");
                if i % 3 == 0 {
                    s.push_str(&format!("<setting id=\"{id}\" type=\"enum\" default-value=\"a\"><name>Choice {i}</name><choice id=\"a\"><name>A</name></choice><choice id=\"b\"><name>B</name></choice></setting>\n"));
                } else {
                    s.push_str(&format!("<setting id=\"{id}\" type=\"string\" min-length=\"1\" max-length=\"64\" regex=\"^[a-z]+$\"><name>Setting {i}</name><name xml:lang=\"de-DE\">Einstellung {i}</name><description>Some text for {id}.</description></setting>\n"));
                }
            }
            s.push_str("</group>\n");
        }
        s.push_str("</settings><requirements xmlns:db=\"http://apstandard.com/ns/1/db\"><db:db><db:id>main</db:id><db:server-type>mysql</db:server-type></db:db></requirements>");
        s.push_str("<provision><url-mapping><mapping url=\"/\" path=\"htdocs\"><mapping url=\"cache\"/></mapping></url-mapping><configuration-script name=\"configure\"><script-language>php</script-language></configuration-script></provision></service>\n");
    }
    s.push_str("<provision><configuration-script name=\"configure\"><script-language>php</script-language></configuration-script></provision></service></application>\n");
    s
}

/// MB/s of `a` and `b` in alternating half-second rounds (12 pairs, 12 s in all), so that a
/// change in machine load (CI neighbours, other builds) affects both alike; each pair gives one
/// ratio of `b` to `a`.
struct Rates {
    a: f64,
    b: f64,
    /// `b / a` of each pair of rounds, sorted.
    ratios: Vec<f64>,
}

fn rates(bytes: usize, a: impl Fn(), b: impl Fn()) -> Rates {
    for _ in 0..3 {
        a();
        b();
    }
    let round = |f: &dyn Fn()| {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(500) {
            f();
            n += 1;
        }
        bytes as f64 * f64::from(n) / start.elapsed().as_secs_f64() / 1e6
    };
    let (mut ra, mut rb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..12 {
        let x = round(&a);
        let y = round(&b);
        ra.push(x);
        rb.push(y);
        ratios.push(y / x);
    }
    ratios.sort_by(f64::total_cmp);
    Rates {
        a: median(ra),
        b: median(rb),
        ratios,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Mean wall time of one call, in milliseconds, over `n` calls.
fn mean_ms(n: u32, f: impl Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e3 / f64::from(n)
}

fn main() {
    let xml = generate();
    let (meta, diags) = aps_meta::parse_app_meta(&xml, "bench.xml").expect("bench input parses");
    let services = meta.service.children.len();
    let settings: usize = meta
        .service
        .children
        .iter()
        .map(|s| s.all_settings().len())
        .sum();
    assert!(services >= 50 && settings >= 2000 && diags.is_empty());
    let r = rates(
        xml.len(),
        || {
            black_box(roxmltree::Document::parse(black_box(&xml)).unwrap());
        },
        || {
            black_box(aps_meta::parse_app_meta(black_box(&xml), "bench.xml").unwrap());
        },
    );
    println!(
        "input: {} bytes, {services} services, {settings} settings",
        xml.len()
    );
    println!("roxmltree::Document::parse: {:.1} MB/s (median round)", r.a);
    println!(
        "aps_meta::parse_app_meta:    {:.1} MB/s (median round)",
        r.b
    );
    println!(
        "ours / bare, per pair of rounds: median {:.0}%, min {:.0}%, max {:.0}% (goal: at least 50%)",
        r.ratios[r.ratios.len() / 2] * 100.0,
        r.ratios[0] * 100.0,
        r.ratios[r.ratios.len() - 1] * 100.0
    );
    hostile();
}

/// Refusal times of hostile inputs: the DTD is refused before any entity exists, the depth
/// before the model builder recurses.
fn hostile() {
    let laughs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/hostile/billion-laughs.xml"
    ))
    .expect("fixtures/hostile/billion-laughs.xml");
    let ms = mean_ms(1000, || {
        let e = aps_meta::parse_app_meta(black_box(&laughs), "APP-META.xml").unwrap_err();
        assert_eq!(e.code(), "xml-dtd-refused");
    });
    println!("billion laughs refused (xml-dtd-refused): {ms:.4} ms per file");
    let depth = 100_000;
    let deep = format!(
        "<application xmlns=\"http://apstandard.com/ns/1\" version=\"1.2\"><name>a</name><version>1</version><release>1</release><service id=\"s\">{}{}</service></application>",
        "<service id=\"x\">".repeat(depth),
        "</service>".repeat(depth)
    );
    let ms = mean_ms(20, || {
        let e = aps_meta::parse_app_meta(black_box(&deep), "APP-META.xml").unwrap_err();
        assert_eq!(e.code(), "xml-too-deep");
    });
    println!(
        "{depth}-deep nesting refused (xml-too-deep, {} bytes): {ms:.2} ms per file",
        deep.len()
    );
}
