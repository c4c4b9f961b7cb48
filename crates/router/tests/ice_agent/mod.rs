//! The full ICE agent of `tests/peers/ice` (aioice), as the Teams client of media bypass.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

fn agent_python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join("tests/peers/ice/.venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run tests/peers/install.sh",
        py.display()
    );
    py
}

/// The full ICE agent (`tests/peers/ice/full_agent.py`), driven over its stdin and stdout.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl Agent {
    /// Starts the agent with `args` (`--listen`, `--ufrag`, `--tone`… see the script).
    pub fn start(args: &[&str]) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut child = Command::new(agent_python())
            .arg(root.join("tests/peers/ice/full_agent.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the ICE agent");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdin, out }
    }

    /// Hands the agent the SBC's SDP: it runs ICE against it (again: a restart).
    pub fn offer(&mut self, sdp: &str) {
        let line = serde_json::json!({ "sdp": sdp }).to_string();
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next line the agent prints that has `key`.
    pub fn next(&mut self, key: &str) -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.out.read_line(&mut line).unwrap();
            assert!(n > 0, "the ICE agent ended before saying {key}");
            let v: Value = serde_json::from_str(line.trim()).unwrap();
            if v.get(key).is_some() {
                return v;
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
