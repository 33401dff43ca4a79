//! knock.conf: the original tportknockd `<EVENT>` … `</EVENT>` language.
//! (Parser: issue 2, filled in by the config work.)

use crate::knock::Step;

/// One `<NAME>` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    /// Line of the opening tag, for messages.
    pub line: usize,
    pub sequence: Vec<Step>,
    /// Seconds, at least 1; the whole sequence must arrive within it,
    /// counted from its first frame.
    pub timeout: u32,
    pub start_command: String,
    pub stop_command: Option<String>,
    /// Seconds after completion that `stop_command` runs.
    pub command_delay: Option<u32>,
}

/// A whole, valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub events: Vec<Event>,
}

/// Every problem found in a file, each as `FILE:LINE: message` (or
/// `FILE: message` when no line applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub messages: Vec<String>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.messages.join("\n"))
    }
}

impl std::error::Error for LoadError {}

/// Parses a file's bytes; `file` names it in messages. Does not look at
/// ownership or permissions (the client uses this to read sequences).
pub fn parse(text: &[u8], file: &str) -> Result<Config, LoadError> {
    let _ = text;
    Err(LoadError { messages: vec![format!("{file}: parser not yet written")] })
}

/// Reads and parses `path` for the daemon: refuses a file that group or
/// others can write, or owned by someone other than root or the running user.
pub fn load(path: &std::path::Path) -> Result<Config, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError {
        messages: vec![format!("{}: {e}", path.display())],
    })?;
    parse(&bytes, &path.display().to_string())
}
