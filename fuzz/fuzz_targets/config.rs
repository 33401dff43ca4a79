//! The knock.conf parser on arbitrary bytes: never panics, and whatever it
//! accepts is sane: steps print back to themselves, limits hold, and the
//! checker's warnings run on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tportknockd::config;
use tportknockd::knock::Step;

fuzz_target!(|data: &[u8]| {
    let cfg = match config::parse(data, "fuzz.conf") {
        Ok(cfg) => cfg,
        Err(e) => {
            // Every message is one line: none may smuggle a newline into a log.
            for m in &e.messages {
                assert!(!m.contains('\n'), "{m:?}");
            }
            return;
        }
    };
    let _ = tportknockd::check::warnings(&cfg, "fuzz.conf");
    for ev in &cfg.events {
        assert!(
            !ev.sequence.is_empty(),
            "an event without steps was accepted"
        );
        assert!((1..=config::MAX_TIMEOUT).contains(&ev.timeout));
        assert!(ev.name.len() <= config::MAX_NAME);
        assert!(!ev.start_command.is_empty());
        for step in &ev.sequence {
            let text = step.to_string();
            assert_eq!(text.parse::<Step>().as_ref(), Ok(step), "{text}");
        }
    }
});
