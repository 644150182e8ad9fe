//! Any queue message body: what is not a Dossier message is refused without panicking, and one
//! that parses reads back the same once written again, its carried record's bytes included, and
//! again after it is deferred (counted once more).
#![no_main]
use dossier_core::messages::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let Ok((message, deferred)) = Message::parse_counted(body) else { return };
    assert_eq!(Message::parse(&message.to_body()).ok().as_ref(), Some(&message));
    if let Ok(again) = Message::deferred(body, u32::MAX) {
        assert_eq!(Message::parse_counted(&again).ok(), Some((message, deferred + 1)));
    }
});
