//! Small parsers: Kubernetes quantities and Secret data.

use super::*;

/// A Kubernetes quantity (`100m`, `1`, `0.5`, `128Mi`, `1G`, `1e3`) as a number.
pub fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?;
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = s.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|n| n * factor);
        }
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Standard base64 (what Secret `data` holds), to text.
pub(super) fn base64_decode(s: &str) -> Option<String> {
    use base64::Engine as _;
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()?;
    String::from_utf8(bytes).ok()
}
