//! A rotating event in the config: `key_file` (its presence makes the
//! event rotating, and `sequence` a list of step templates) and `window`.
//! The derivation itself is [`crate::knock::rotate`].
//!
//! ```text
//! <SSH>
//!  sequence = tcp:40000-40999:{s,fs,su} udp:50000-50999 tcp:41000-41999:s
//!  key_file = /etc/tportknockd/ssh.key
//!  window   = 30
//!  ...
//! </SSH>
//! ```
//!
//! A relative `key_file` is relative to the directory of the config file
//! that names it, for the daemon and the client alike (the daemon's `-D`
//! leaves the working directory for `/`).

use std::path::{Path, PathBuf};

use crate::crypto::key::Key;
use crate::crypto::keyfile::{self, KeyFileError};
use crate::knock::rotate::{self, WindowLen};
use crate::knock::template::Template;
use crate::knock::Step;

/// What makes an event rotating.
///
/// Invariant: `templates` is not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The step templates, in order; each window's sequence is drawn from them.
    pub templates: Vec<Template>,
    /// `key_file` as written in the config.
    pub key_file: PathBuf,
    /// Seconds per window.
    pub window: WindowLen,
    /// The key, once [`Rotation::load_key`] has read it (`config::load`
    /// does for the daemon; `config::parse` leaves it `None`). Its `Debug`
    /// shows only its length.
    pub key: Option<Key>,
}

impl Rotation {
    /// The key file's path: `key_file` itself when absolute, else relative
    /// to the directory of `config` (the config file's path).
    pub fn key_path(&self, config: &Path) -> PathBuf {
        if self.key_file.is_absolute() {
            return self.key_file.clone();
        }
        match config.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(&self.key_file),
            _ => self.key_file.clone(),
        }
    }

    /// Reads the key file under [`keyfile::load`]'s rules (a regular file
    /// of root or the running user, no access for group or others); the
    /// error names the file and the fix and shows no byte of it.
    pub fn load_key(&mut self, config: &Path) -> Result<(), KeyFileError> {
        self.key = Some(keyfile::load(&self.key_path(config))?);
        Ok(())
    }

    /// The concrete sequence of `event` for window `w`; `None` without a
    /// key (or in the derivation's never-seen case of running out of words).
    pub fn sequence(&self, event: &str, w: u64) -> Option<Vec<Step>> {
        let key = self.key.as_ref()?;
        rotate::derive(key, event, w, &self.templates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(file: &str) -> Rotation {
        Rotation {
            templates: vec!["udp:1-65535".parse().unwrap()],
            key_file: PathBuf::from(file),
            window: WindowLen::default(),
            key: None,
        }
    }

    #[test]
    fn relative_key_files_are_found_beside_the_config() {
        let conf = Path::new("/etc/tportknockd/knock.conf");
        assert_eq!(
            rotation("ssh.key").key_path(conf),
            Path::new("/etc/tportknockd/ssh.key")
        );
        assert_eq!(
            rotation("keys/ssh.key").key_path(Path::new("knock.conf")),
            Path::new("keys/ssh.key")
        );
        assert_eq!(
            rotation("/srv/ssh.key").key_path(conf),
            Path::new("/srv/ssh.key")
        );
    }

    #[test]
    fn no_sequence_without_a_key() {
        let mut r = rotation("k");
        assert_eq!(r.sequence("SSH", 1), None);
        r.key = Some(Key::new(&(0u8..32).collect::<Vec<u8>>()).unwrap());
        // knock.conf(5)'s vector 2, first step.
        assert_eq!(r.sequence("SSH", 56_666_666).unwrap()[0].port, 21424);
    }
}
