//! auscult's AUC and pAUC against scikit-learn's `roc_auc_score` (and `max_fpr=0.1`) on fixed
//! score sets: ties, small sets, perfect and reversed separation, and a larger random set.

mod common;

use auscult_pipeline::eval::metrics::{auc, partial_auc};
use common::python_ok;

fn score_sets() -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut state = 12_345u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let random_normal: Vec<f64> = (0..200).map(|_| uniform()).collect();
    let random_anomalous: Vec<f64> = (0..70).map(|_| uniform() * 0.8 + 0.3).collect();
    vec![
        (vec![0.1, 0.4, 0.35, 0.8], vec![0.9, 0.5, 0.2]),
        (vec![1.0, 1.0, 2.0, 3.0, 3.0], vec![3.0, 2.0, 4.0, 1.0]),
        (vec![0.1, 0.2, 0.3], vec![0.4, 0.5]),
        (vec![0.4, 0.5], vec![0.1, 0.2, 0.3]),
        (vec![5.0; 6], vec![5.0; 3]),
        ((0..50).map(|i| f64::from(i % 7)).collect(), (0..20).map(|i| f64::from(i % 9) + 0.5).collect()),
        (random_normal, random_anomalous),
    ]
}

#[test]
fn auc_and_pauc_equal_scikit_learn() {
    let sets = score_sets();
    let text = serde_json::to_string(&sets).unwrap();
    let script = r#"
import sys, json
from sklearn.metrics import roc_auc_score
for normal, anomalous in json.loads(sys.argv[1]):
    y = [0] * len(normal) + [1] * len(anomalous)
    s = normal + anomalous
    print(roc_auc_score(y, s), roc_auc_score(y, s, max_fpr=0.1))
"#;
    let reference = python_ok(script, &[std::path::Path::new(&text)]);
    for ((normal, anomalous), line) in sets.iter().zip(reference.lines()) {
        let mut values = line.split_whitespace().map(|v| v.parse::<f64>().unwrap());
        let (sk_auc, sk_pauc) = (values.next().unwrap(), values.next().unwrap());
        let ours_auc = auc(normal, anomalous).unwrap();
        let ours_pauc = partial_auc(normal, anomalous, 0.1).unwrap();
        assert!((ours_auc - sk_auc).abs() < 1e-12, "AUC {ours_auc} vs sklearn {sk_auc} on {normal:?} / {anomalous:?}");
        assert!(
            (ours_pauc - sk_pauc).abs() < 1e-12,
            "pAUC {ours_pauc} vs sklearn {sk_pauc} on {normal:?} / {anomalous:?}"
        );
    }
    assert_eq!(reference.lines().count(), sets.len());
}
