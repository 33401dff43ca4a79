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
