//! The archive on object storage, as a plant without a shared disk runs it: `auscult run
//! --archive s3://bucket/prefix` against a real S3-API server on loopback (moto's server, from
//! `scripts/s3-server.sh`), read back by pyarrow's `S3FileSystem`; and `file://`. Each holds
//! the same files and rows as the same run archived to a folder.

mod common;

use common::{auscult, python_ok, read_json, repo, run_ok};
use std::path::Path;
use std::process::Command;

/// An S3-API server for one test, stopped when dropped.
struct S3Server {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let output = run_ok(
            Command::new("bash")
                .arg(repo().join("scripts/s3-server.sh"))
                .arg("start")
                .arg(dir.path())
                .env("AUSCULT_TEST_PYTHON", common::python().get_program()),
        );
        let endpoint = String::from_utf8(output.stdout).unwrap().lines().last().unwrap().trim().to_owned();
        S3Server { dir, endpoint }
    }

    fn client_env<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "auscult-test")
            .env("AWS_SECRET_ACCESS_KEY", "auscult-test-secret")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(repo().join("scripts/s3-server.sh")).arg("stop").arg(self.dir.path()).status();
    }
}

/// The same simulated run, archived to `archive`; returns its summary.
fn run_to(
    archive: &str,
    dir: &Path,
    name: &str,
    prepare: impl FnOnce(&mut Command) -> &mut Command,
) -> serde_json::Value {
    let summary = dir.join(format!("{name}.json"));
    let mut command = auscult();
    command
        .args(["run", "--simulate", "3", "--duration", "330", "-w", "2", "--events"])
        .arg(dir.join(format!("{name}.jsonl")))
        .args(["--archive", archive, "--summary-json"])
        .arg(&summary);
    run_ok(prepare(&mut command));
    read_json(&summary)
}

/// Files (relative path, rows) and the sum of scores, read by pyarrow from `filesystem`
/// (a Python expression) at `root`.
const READ_BACK: &str = r#"
import json, sys
import pyarrow.dataset as ds, pyarrow.fs as pf, pyarrow.compute as pc, pyarrow.parquet as pq
root, endpoint = sys.argv[1], sys.argv[2]
if endpoint == "local":
    fs = pf.LocalFileSystem()
else:
    fs = pf.S3FileSystem(access_key="auscult-test", secret_key="auscult-test-secret",
                         endpoint_override=endpoint.removeprefix("http://"), scheme="http", region="us-east-1")
infos = fs.get_file_info(pf.FileSelector(root, recursive=True))
files = sorted(i.path[len(root) + 1:] for i in infos if i.type == pf.FileType.File)
table = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive").to_table()
rows = {f: pq.ParquetFile(f"{root}/{f}", filesystem=fs).metadata.num_rows for f in files}
print(json.dumps({"files": rows, "rows": table.num_rows, "score_sum": pc.sum(table["score"]).as_py(),
                  "machines": sorted(set(table["machine_id"].to_pylist())),
                  "types": sorted(set(table["machine_type"].to_pylist()))}))
"#;

fn read_back(root: &str, endpoint: &str) -> serde_json::Value {
    serde_json::from_str(&python_ok(READ_BACK, &[Path::new(root), Path::new(endpoint)])).unwrap()
}

#[test]
fn an_s3_archive_holds_what_a_folder_archive_holds_and_pyarrow_reads_it() {
    let server = S3Server::start();
    python_ok(
        "import boto3, sys\n\
         boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='auscult-test', \
         aws_secret_access_key='auscult-test-secret', region_name='us-east-1').create_bucket(Bucket='plant-archive')",
        &[Path::new(&server.endpoint)],
    );
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder-archive");
    let reference = run_to(folder.to_str().unwrap(), dir.path(), "folder", |c| c);
    let summary = run_to("s3://plant-archive/site-1/windows", dir.path(), "s3", |c| server.client_env(c));

    let expected = read_back(folder.to_str().unwrap(), "local");
    let stored = read_back("plant-archive/site-1/windows", &server.endpoint);
    assert!(expected["rows"].as_u64().unwrap() > 300, "{expected}");
    assert_eq!(stored["files"], expected["files"], "the same files, each with the same rows, and nothing else");
    assert_eq!(stored["rows"], summary["totals"]["archive_rows"]);
    assert_eq!(stored["rows"], expected["rows"]);
    assert_eq!(stored["machines"], expected["machines"]);
    assert_eq!(stored["types"], expected["types"], "the Hive partitions read back as columns");
    assert_eq!(stored["score_sum"], expected["score_sum"]);
    assert_eq!(summary["totals"]["archive_files"], reference["totals"]["archive_files"]);

    // `auscult report` reads the bucket as it reads the folder: the same fleet table.
    let fleet_table = |archive: &str, name: &str| {
        let page = dir.path().join(format!("{name}.html"));
        run_ok(server.client_env(auscult().args(["report", "--archive", archive, "-o"]).arg(&page)));
        let html = std::fs::read_to_string(&page).unwrap();
        let start = html.find("<table id=\"fleet-table\">").expect("a fleet table");
        html[start..start + html[start..].find("</table>").unwrap()].to_owned()
    };
    let from_bucket = fleet_table("s3://plant-archive/site-1/windows", "s3-report");
    assert_eq!(from_bucket, fleet_table(folder.to_str().unwrap(), "folder-report"));
    assert_eq!(from_bucket.matches("<tr>").count(), 4, "a header and 3 machines");

    // The run says where the archive went, and a bucket that does not exist is one clear line.
    let missing = dir.path().join("missing.json");
    let output = server
        .client_env(
            auscult()
                .args(["run", "--simulate", "1", "--duration", "330", "--events"])
                .arg(dir.path().join("missing.jsonl"))
                .args(["--archive", "s3://no-such-bucket/x", "--summary-json"])
                .arg(&missing),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("s3://no-such-bucket/x/date="))
        .unwrap_or_else(|| panic!("no line names the object that could not be written:\n{stderr}"));
    assert!(line.len() < 600, "one line: {line}");
}

#[test]
fn a_file_url_archive_is_a_folder_archive() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder-archive");
    let through_store = dir.path().join("file-archive");
    run_to(folder.to_str().unwrap(), dir.path(), "folder", |c| c);
    let url = format!("file://{}", through_store.display());
    let summary = run_to(&url, dir.path(), "file", |c| c);
    let expected = read_back(folder.to_str().unwrap(), "local");
    let stored = read_back(through_store.to_str().unwrap(), "local");
    assert_eq!(stored["files"], expected["files"]);
    assert_eq!(stored["rows"], summary["totals"]["archive_rows"]);
    assert_eq!(stored["score_sum"], expected["score_sum"]);
}

#[test]
fn an_archive_url_of_another_scheme_is_refused_in_one_line() {
    let output = auscult().args(["run", "--simulate", "1", "--archive", "ftp://host/archive"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("ftp://host/archive: ftp:// is not an archive location"), "{stderr}");
}
