//! `docker-compose.yml` as far as this machine can check it (no Docker Compose, no image
//! registry): it parses as YAML, has the services a deployment needs, its two auscult processes
//! agree with the hostfile, and every auscult command line it runs is accepted by the binary.

mod common;

use common::{auscult, python_ok, repo};

#[test]
fn the_compose_file_runs_commands_the_binary_accepts() {
    let script = r#"
import json, sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
print(json.dumps(compose))
"#;
    let compose: serde_json::Value =
        serde_json::from_str(&python_ok(script, &[&repo().join("docker-compose.yml")])).expect("JSON");
    let services = compose["services"].as_object().expect("services");
    for name in
        ["kafka", "minio", "bucket", "topics", "auscult-0", "auscult-1", "agents", "anomalies", "prometheus", "grafana"]
    {
        assert!(services.contains_key(name), "no service {name}");
    }
    let kafka = &services["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka:"));
    assert_eq!(kafka["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller", "KRaft mode");

    let hosts = std::fs::read_to_string(repo().join("deploy/hosts.txt")).unwrap();
    let hosts: Vec<&str> = hosts.lines().filter(|line| !line.trim().is_empty()).collect();
    let mut processes = Vec::new();
    let mut checked = 0;
    for (name, service) in services {
        if service["image"] != "auscult:latest" {
            continue;
        }
        let args: Vec<String> =
            service["command"].as_array().unwrap().iter().map(|arg| arg.as_str().unwrap().to_owned()).collect();
        // The binary parses the exact command line (`--help` after it stops before running).
        let output = auscult().args(&args).arg("--help").output().unwrap();
        assert!(output.status.success(), "{name}: {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        checked += 1;
        if let Some(at) = args.iter().position(|arg| arg == "--process") {
            let index: usize = args[at + 1].parse().unwrap();
            let total: usize = args[args.iter().position(|arg| arg == "--processes").unwrap() + 1].parse().unwrap();
            assert_eq!(total, hosts.len(), "{name}: --processes and the hostfile disagree");
            let hostname = service["hostname"].as_str().unwrap();
            assert!(hosts[index].starts_with(&format!("{hostname}:")), "{name} is process {index}: {}", hosts[index]);
            processes.push(index);
            // The archive is on the S3-compatible service, in the bucket the `bucket` job makes;
            // no process mounts an archive folder.
            let archive = &args[args.iter().position(|arg| arg == "--archive").unwrap() + 1];
            let bucket =
                archive.strip_prefix("s3://").and_then(|rest| rest.split('/').next()).expect("an s3:// archive");
            let makes = services["bucket"]["entrypoint"].as_array().unwrap().iter().any(|arg| {
                arg.as_str().is_some_and(|text| text.contains(&format!("mc mb --ignore-existing local/{bucket}")))
            });
            assert!(makes, "{name} archives to bucket {bucket}, which the bucket job does not make");
            let endpoint = service["environment"]["AWS_ENDPOINT"].as_str().expect("an endpoint");
            let host = endpoint.trim_start_matches("http://").split(':').next().unwrap();
            assert!(services.contains_key(host), "{name}'s endpoint {endpoint} is not a service");
            // Nor a state folder: the state is in the changelog topic.
            let state = &args[args.iter().position(|arg| arg == "--state").unwrap() + 1];
            assert_eq!(state, "kafka", "{name} keeps its state in {state}");
            let mounts = service["volumes"].as_array().unwrap();
            assert!(mounts.iter().all(|m| m.as_str().unwrap().ends_with(":ro")), "{name} mounts a writable volume");
        }
    }
    assert_eq!(checked, 4, "topics, auscult-0, auscult-1 and agents run auscult");
    // Every file a service mounts from the repo is there, and Prometheus scrapes every process
    // that serves metrics.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(path) = source.strip_prefix("./") {
                assert!(repo().join(path).exists(), "{name} mounts {source}, which is not in the repo");
            }
        }
    }
    let prometheus = std::fs::read_to_string(repo().join("deploy/prometheus.yml")).unwrap();
    for (name, service) in services {
        let serves = service["command"].as_array().into_iter().flatten().any(|arg| arg == "--metrics");
        if serves {
            let target = format!("{}:9100", service["hostname"].as_str().unwrap_or(name));
            assert!(prometheus.contains(&target), "deploy/prometheus.yml does not scrape {target}");
        }
    }
    processes.sort_unstable();
    assert_eq!(processes, vec![0, 1]);
}
