//! Running zferry inside the lab as the unprivileged user, and reading its JSON report.

use super::{Lab, USER};
use serde_json::Value;

/// A zferry run: exit code, parsed JSON report (if any) and stderr.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub report: Value,
    pub stderr: String,
}

impl Run {
    /// The report entry for source dataset `src`.
    pub fn dataset(&self, src: &str) -> &Value {
        self.report["datasets"]
            .as_array()
            .unwrap_or_else(|| panic!("no datasets in report: {self:?}"))
            .iter()
            .find(|d| d["source"] == src)
            .unwrap_or_else(|| panic!("{src} not in report: {self:?}"))
    }

    /// The action taken for `src`.
    pub fn action(&self, src: &str) -> &str {
        self.dataset(src)["action"].as_str().unwrap()
    }
}

/// Runs `zferry ARGS --json` on `vm` as the lab user.
pub fn zferry(lab: &Lab, vm: &str, args: &str) -> Run {
    let o = lab.sh_as(vm, USER, &format!("zferry {args} --json"));
    let report = serde_json::from_str(&o.stdout).unwrap_or(Value::Null);
    Run {
        code: o.code,
        report,
        stderr: o.stderr,
    }
}

/// `pull --host 10.0.2.2 --port <client port> --user zferry` prefix for `from` VM.
pub fn remote(lab: &Lab, from: &str) -> String {
    format!("--host 10.0.2.2 --port {} --user {USER}", lab.port(from))
}
